"""Every decoder (each architecture's config, and our own GPT) gives the circuit analyses what
`models.contracts.CircuitModel` names: checked by structure, then by running traced, resumed and patched
forwards whose results are known without a reference (a resumed run is the same run; patching every
position of the stream entering layer 0 with another prompt's is that prompt's run)."""

from __future__ import annotations

import inspect

import pytest
import torch

from models.attention import MultiHeadAttention
from models.contracts import FORWARD_ARGUMENTS, CircuitModel, CircuitTrace
from models.decoder import Decoder
from models.decoder_config import config_from_hf
from models.gpt import GPT, GPTConfig
from models.patching import Patch
from tests import lm_checkpoints as lm

pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=[*lm.TINY, "our gpt"])
def model(request):
    torch.manual_seed(0)
    if request.param == "our gpt":
        return GPT(GPTConfig(vocab=lm.VOCAB, d_model=64, n_heads=4, n_layers=2, max_len=64)).eval()
    raw = lm.hf_config(request.param).to_dict()
    return Decoder(config_from_hf(raw, request.path)).eval()


def test_structure(model):
    assert isinstance(model, CircuitModel)
    assert all(isinstance(b.attn, MultiHeadAttention) for b in model.blocks)
    params = inspect.signature(model.forward).parameters
    assert set(FORWARD_ARGUMENTS) <= set(params), set(FORWARD_ARGUMENTS) - set(params)
    assert model.unembedding.shape == (lm.VOCAB, model.blocks[0].attn.d_model)


@torch.inference_mode()
def test_traced_resumed_and_patched_forwards(model):
    ids, other = torch.randint(3, lm.VOCAB, (1, 12)), torch.randint(3, lm.VOCAB, (1, 12))
    logits, trace = model(ids, return_trace=True, capture="weights")
    assert isinstance(trace, CircuitTrace) and len(trace.streams) == len(trace.attentions) == len(
        model.blocks
    )
    pre, mid, post = trace.streams[-1]
    assert torch.equal(model.readout(post), logits)
    assert torch.allclose(sum(model.embedding_terms(ids).values()), trace.streams[0][0], atol=1e-6)
    # Resuming at layer 1 from the stream entering it is the same run.
    resumed, rtrace = model(ids, resume=(1, trace.streams[1][0]), return_trace=True, logits="last")
    assert torch.allclose(resumed, logits[:, -1:], atol=1e-5) and len(rtrace.streams) == len(model.blocks) - 1
    # Patching the stream entering layer 0 at every position with another prompt's gives that prompt's run.
    theirs, ttrace = model(other, return_trace=True)
    select = torch.zeros(1, len(model.blocks), 12, dtype=torch.bool)
    select[:, 0] = True
    source = torch.stack([s[0][0] for s in ttrace.streams])  # (L, T, d)
    patched, _ = model(ids, patch=Patch("resid_pre", select, source), logits="last")
    assert torch.allclose(patched, theirs[:, -1:], atol=1e-5)
    # A head's own contexts written back change nothing; zeros change the output.
    attn = model.blocks[0].attn
    contexts = torch.stack(
        [a.concat[0].view(12, attn.n_heads, attn.d_head).transpose(0, 1) for a in trace.attentions]
    )
    heads = torch.zeros(1, len(model.blocks), attn.n_heads, 12, dtype=torch.bool)
    heads[:, 1, 0] = True
    same, _ = model(ids, patch=Patch("head", heads, contexts), logits="last")
    zeroed, _ = model(ids, patch=Patch("head", heads, torch.zeros_like(contexts)), logits="last")
    assert torch.allclose(same, logits[:, -1:], atol=1e-5) and not torch.allclose(zeroed, same, atol=1e-6)
    only, otrace = model(ids, return_trace=True, trace_layers=(1,))
    assert otrace.attentions[0] is None and otrace.attentions[1] is not None


@torch.inference_mode()
def test_heads_sum_to_stream_says_when_they_do(model):
    ids = torch.randint(3, lm.VOCAB, (1, 10))
    _, trace = model(ids, return_trace=True)
    (pre, mid, _), attn, at = trace.streams[0], model.blocks[0].attn, trace.attentions[0]
    terms = [
        at.concat[..., attn.head_slice(h)] @ attn.w_o.weight[:, attn.head_slice(h)].T
        for h in range(attn.n_heads)
    ]
    bias = 0 if attn.w_o.bias is None else attn.w_o.bias
    adds_up = bool(((pre + sum(terms) + bias) - mid).abs().max() <= 1e-5)
    assert adds_up == model.heads_sum_to_stream
    assert (model.logit_softcap is not None) == (getattr(model.cfg, "arch", None) == "gemma2")


def test_gradients_flow_from_the_logits_to_the_stream_entering_layer_0(model):
    """What attribution patching does: a leaf of the caller's as the resumed stream, a traced forward, one
    backward — no in-place op of the core (soft cap, mask, softmax) may stand in autograd's way."""
    ids = torch.randint(3, lm.VOCAB, (1, 10))
    x0 = sum(model.embedding_terms(ids).values()).detach().requires_grad_(True)
    logits, trace = model(ids, resume=(0, x0), return_trace=True, capture="weights", logits="last")
    streams = [s[0] for s in trace.streams]
    grads = torch.autograd.grad(
        logits[0, -1, 5] - logits[0, -1, 7], [x0, *streams, trace.attentions[1].concat]
    )
    assert grads[0].shape == x0.shape and grads[0].abs().sum() > 0
