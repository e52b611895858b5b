"""One frozen config for every decoder-only language model `models.decoder.Decoder` runs, and how it is
read from a checkpoint's own description: a Hugging Face ``config.json`` or a GGUF file's metadata.

The architectures differ by options, not by code: Llama (Llama 2/3, SmolLM, TinyLlama), Mistral (a
sliding window on every layer), Qwen 2/2.5 (biases on W_Q, W_K, W_V, none on W_O), Qwen 3 (an RMSNorm on
each head's q and k), Gemma 2 (GeGLU, embeddings × √d, norms before and after each sublayer, soft-capped
attention and final logits, local and global layers alternating, its own attention scale) and GPT-2
(learned positions, LayerNorm, biases everywhere, a plain MLP). Defaults a ``config.json`` may leave out
are those of the installed transformers' config classes (transformers 5.25), named per architecture below.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

from models.checkpoints import CheckpointError
from models.positions import RopeScaling

ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gpt2")
ACTIVATIONS = ("silu", "gelu_pytorch_tanh", "gelu_new", "gelu")
ROPE_KINDS = ("default", "linear", "llama3")


@dataclass(frozen=True)
class DecoderConfig:
    """A decoder's shape and options. The defaults are SmolLM2-135M's (a Llama); every reader sets each."""

    arch: str = "llama"  # one of ARCHITECTURES: what the checkpoint says it is
    vocab: int = 49_152  # tokens
    d_model: int = 576  # residual width
    n_layers: int = 30
    n_heads: int = 9  # query heads
    n_kv_heads: int = 3  # key/value heads, each read by n_heads / n_kv_heads query heads (GQA)
    d_head: int = 0  # a head's width; 0 means d_model / n_heads (set in __post_init__)
    d_ff: int = 1536  # the MLP's hidden width
    norm: Literal["rms", "layer"] = "rms"  # RMSNorm (no bias) or LayerNorm (GPT-2)
    norm_eps: float = 1e-5
    positions: Literal["rope", "learned"] = "rope"  # RoPE inside attention, or learned rows added (GPT-2)
    rope_base: float = 100_000.0  # RoPE: channel pair i turns by position · base^(−2i/rope_dim)
    rope_dim: int = 0  # channels of a head RoPE rotates; 0 means all of them (d_head)
    rope_scaling: RopeScaling | None = None  # Llama 3.1's "llama3", "linear", or None
    max_len: int = 8192  # the context it was trained for
    mlp: Literal["gated", "plain"] = "gated"  # W_down(act(W_gate x) ⊙ W_up x), or W_down(act(W_up x))
    activation: str = "silu"  # one of ACTIVATIONS (Hugging Face's names)
    qkv_bias: bool = False  # biases on W_Q, W_K, W_V
    out_bias: bool = False  # a bias on W_O
    mlp_bias: bool = False
    qk_norm: bool = False  # RMSNorm on each head's q and k before RoPE (Qwen 3)
    attn_scale: float | None = None  # the logits' factor; None: 1/sqrt(d_head)
    attn_softcap: float | None = None  # attention logits bounded to c · tanh(s / c) (Gemma 2)
    final_softcap: float | None = None  # output logits bounded the same way (Gemma 2)
    window: int | None = None  # sliding window: keys a query sees, itself included
    windowed_layers: tuple[int, ...] | None = None  # layers with the window; None: all of them
    embed_scale: bool = False  # token embeddings × √d_model (Gemma 2)
    post_norms: bool = False  # a norm after each sublayer too, before its residual add (Gemma 2)
    tied: bool = True  # the unembedding is the token embedding matrix

    def __post_init__(self) -> None:
        if self.d_head == 0:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model {self.d_model} is not divisible by {self.n_heads} heads; give d_head."
                )
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        if self.rope_dim == 0:
            object.__setattr__(self, "rope_dim", self.d_head)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"{self.n_heads} heads are not a multiple of {self.n_kv_heads} K/V heads.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}.")

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of ``layer``, or None for a global layer."""
        if self.window is None or (self.windowed_layers is not None and layer not in self.windowed_layers):
            return None
        return self.window


# --- From a Hugging Face config.json -------------------------------------------------------------
# Each architecture's defaults for keys a config.json may omit (the transformers 5.25 config classes).
LLAMA_DEFAULTS = dict(rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False, rope_theta=10_000.0)
QWEN_WINDOWS = dict(use_sliding_window=False, sliding_window=4096, max_window_layers=28)
HF_DEFAULTS: dict[str, dict] = {
    "llama": dict(LLAMA_DEFAULTS, max_position_embeddings=2048, attention_bias=False, mlp_bias=False),
    "mistral": dict(LLAMA_DEFAULTS, max_position_embeddings=131_072, sliding_window=4096),
    "qwen2": dict(LLAMA_DEFAULTS, max_position_embeddings=32_768, **QWEN_WINDOWS),
    "qwen3": dict(LLAMA_DEFAULTS, max_position_embeddings=32_768, **QWEN_WINDOWS, head_dim=128,
                  attention_bias=False),
    "gemma2": dict(rms_norm_eps=1e-6, max_position_embeddings=8192, hidden_activation="gelu_pytorch_tanh",
                   head_dim=256, query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0, tie_word_embeddings=True, rope_theta=10_000.0,
                   attention_bias=False),
    "gpt2": dict(n_positions=1024, n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                 scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, tie_word_embeddings=True),
}  # fmt: skip
REQUIRED = {"gpt2": ("vocab_size", "n_embd", "n_layer", "n_head"),
            "other": ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size")}  # fmt: skip


def _rope(raw: dict, path: Path, fix: str) -> tuple[float, RopeScaling | None]:
    """(base, scaling) from either spelling: transformers 5's ``rope_parameters`` or the older
    ``rope_theta`` + ``rope_scaling``."""
    params = dict(raw.get("rope_parameters") or {})
    base = float(params.get("rope_theta", raw.get("rope_theta", HF_DEFAULTS["llama"]["rope_theta"])))
    scaling = raw.get("rope_scaling") or params
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_KINDS:
        raise CheckpointError(path, f"RoPE scaling {kind!r} is not supported (only {ROPE_KINDS})", fix)
    if kind == "default":
        return base, None
    original = scaling.get("original_max_position_embeddings", raw.get("max_position_embeddings", 8192))
    return base, RopeScaling(
        kind=kind,
        factor=float(scaling["factor"]),
        low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
        high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
        original_max_len=int(original),
    )


def _windows(arch: str, raw: dict, n_layers: int) -> tuple[int | None, tuple[int, ...] | None]:
    """(window, the layers it applies to) as each architecture's transformers class decides them."""
    if arch == "mistral":
        return raw["sliding_window"], None
    if arch in ("qwen2", "qwen3") and not raw["use_sliding_window"]:
        return None, None
    window = raw.get("sliding_window")
    if window is None:
        return None, None
    kinds = raw.get("layer_types")
    if kinds is None and arch == "gemma2":  # layer 0 local, layer 1 global, …
        kinds = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n_layers)]
    if kinds is None:  # Qwen: the layers from max_window_layers up
        kinds = [
            "sliding_attention" if i >= raw["max_window_layers"] else "full_attention"
            for i in range(n_layers)
        ]
    return window, tuple(i for i, kind in enumerate(kinds) if kind == "sliding_attention")


def config_from_hf(given: dict, path: Path) -> DecoderConfig:
    """The `DecoderConfig` a Hugging Face ``config.json`` (already parsed) describes. An architecture we
    do not run, a missing size or an impossible shape is a `CheckpointError` naming it."""
    arch = given.get("model_type")
    fix = f"open a checkpoint of one of these architectures: {', '.join(ARCHITECTURES)}"
    if arch not in ARCHITECTURES:
        raise CheckpointError(path, f"architecture {arch!r} is not supported", fix)
    raw = {**HF_DEFAULTS[arch], **{k: v for k, v in given.items() if v is not None or k == "sliding_window"}}
    missing = [k for k in REQUIRED["gpt2" if arch == "gpt2" else "other"] if not isinstance(raw.get(k), int)]
    if missing:
        raise CheckpointError(path, f"config.json has no whole-number {missing}", "restore its config.json")
    try:
        if arch == "gpt2":
            return _gpt2(raw, path)
        return _rotary_decoder(arch, raw, path, fix)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(path, f"config.json describes no model we can build ({err})",
                              "restore its config.json") from err  # fmt: skip


def _gpt2(raw: dict, path: Path) -> DecoderConfig:
    if raw["scale_attn_by_inverse_layer_idx"]:
        raise CheckpointError(
            path, "GPT-2 attention scaled by 1/layer is not supported", "use a standard GPT-2"
        )
    d, heads = raw["n_embd"], raw["n_head"]
    return DecoderConfig(
        arch="gpt2", vocab=raw["vocab_size"], d_model=d, n_layers=raw["n_layer"], n_heads=heads,
        n_kv_heads=heads, d_ff=raw["n_inner"] or 4 * d, norm="layer", norm_eps=raw["layer_norm_epsilon"],
        positions="learned", max_len=raw["n_positions"], mlp="plain", activation=raw["activation_function"],
        qkv_bias=True, out_bias=True, mlp_bias=True, attn_scale=None if raw["scale_attn_weights"] else 1.0,
        tied=bool(raw["tie_word_embeddings"]),
    )  # fmt: skip


def _rotary_decoder(arch: str, raw: dict, path: Path, fix: str) -> DecoderConfig:
    base, scaling = _rope(raw, path, fix)
    heads, layers = raw["num_attention_heads"], raw["num_hidden_layers"]
    window, windowed = _windows(arch, raw, layers)
    gemma = arch == "gemma2"
    bias = bool(raw.get("attention_bias", False))
    return DecoderConfig(
        arch=arch, vocab=raw["vocab_size"], d_model=raw["hidden_size"], n_layers=layers, n_heads=heads,
        n_kv_heads=raw.get("num_key_value_heads") or heads, d_head=raw.get("head_dim") or 0,
        d_ff=raw["intermediate_size"], norm_eps=float(raw["rms_norm_eps"]), rope_base=base,
        rope_scaling=scaling, max_len=raw["max_position_embeddings"],
        activation=raw["hidden_activation" if gemma else "hidden_act"],
        qkv_bias=bias or arch == "qwen2", out_bias=bias, mlp_bias=bool(raw.get("mlp_bias", False)),
        qk_norm=arch == "qwen3", attn_scale=raw["query_pre_attn_scalar"] ** -0.5 if gemma else None,
        attn_softcap=raw.get("attn_logit_softcapping") if gemma else None,
        final_softcap=raw.get("final_logit_softcapping") if gemma else None, window=window,
        windowed_layers=windowed, embed_scale=gemma, post_norms=gemma, tied=bool(raw["tie_word_embeddings"]),
    )  # fmt: skip


# --- From a GGUF file's metadata -----------------------------------------------------------------
# llama.cpp's architecture names → ours (its "llama" also holds Mistral, which it runs without a window).
GGUF_ARCHITECTURES = {
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma2": "gemma2",
    "gpt2": "gpt2",
}


def config_from_gguf(meta: dict, tensor_names: set[str], path: Path) -> DecoderConfig:
    """The `DecoderConfig` of a GGUF file, from llama.cpp's metadata keys (``<arch>.block_count`` …) and which
    tensors it holds (an ``output.weight`` means an untied unembedding; biases mean biases)."""
    name = meta.get("general.architecture")
    fix = f"open a GGUF of one of these architectures: {', '.join(GGUF_ARCHITECTURES)}"
    if name not in GGUF_ARCHITECTURES:
        raise CheckpointError(path, f"GGUF architecture {name!r} is not supported", fix)

    def key(suffix: str, default=None):
        value = meta.get(f"{name}.{suffix}", default)
        if value is None:
            raise KeyError(f"{name}.{suffix}")
        return value

    arch = GGUF_ARCHITECTURES[name]
    heads = key("attention.head_count")
    d = key("embedding_length")
    vocab = key("vocab_size", len(meta.get("tokenizer.ggml.tokens", ())) or None)
    common = dict(arch=arch, vocab=vocab, d_model=d, n_layers=key("block_count"), n_heads=heads,
                  d_ff=key("feed_forward_length", 4 * d), max_len=key("context_length", 2048),
                  tied="output.weight" not in tensor_names)  # fmt: skip
    if arch == "gpt2":
        return DecoderConfig(**common, n_kv_heads=heads, norm="layer", positions="learned", mlp="plain",
                             norm_eps=float(key("attention.layer_norm_epsilon")), activation="gelu_new",
                             qkv_bias=True, out_bias=True, mlp_bias=True)  # fmt: skip
    d_head = meta.get(f"{name}.attention.key_length") or meta.get(f"{name}.rope.dimension_count") or 0
    if arch == "qwen3" and not meta.get(f"{name}.attention.key_length"):
        d_head = HF_DEFAULTS["qwen3"]["head_dim"]  # transformers' reading: no key_length → its default
    cfg = DecoderConfig(
        **common, n_kv_heads=key("attention.head_count_kv", heads), d_head=d_head,
        norm_eps=float(key("attention.layer_norm_rms_epsilon")),
        rope_base=float(key("rope.freq_base", 10_000.0)),
        qkv_bias="blk.0.attn_q.bias" in tensor_names, out_bias="blk.0.attn_output.bias" in tensor_names,
        qk_norm=arch == "qwen3",
    )  # fmt: skip
    if meta.get(f"{name}.rope.scaling.type") == "linear":  # the rope_freqs tensor (Llama 3) is the reader's
        cfg = replace(cfg, rope_scaling=RopeScaling("linear", factor=float(key("rope.scaling.factor"))))
    if arch != "gemma2":
        return cfg
    # llama.cpp's attention scale: 1/√d_head, but 1/√(d_model / heads) for the 46-layer (27B) model.
    scalar = d / heads if cfg.n_layers == 46 else cfg.d_head
    return replace(
        cfg,
        activation="gelu_pytorch_tanh",
        attn_scale=scalar**-0.5,
        embed_scale=True,
        post_norms=True,
        attn_softcap=float(key("attn_logit_softcapping", 50.0)),
        final_softcap=float(key("final_logit_softcapping", 30.0)),
        window=key("attention.sliding_window", HF_DEFAULTS["gemma2"]["sliding_window"]),
        windowed_layers=tuple(range(0, cfg.n_layers, 2)),  # layer 0 local, layer 1 global, …
    )


def describe(cfg: DecoderConfig) -> dict:
    """The config as plain JSON values (a model card's ``config``)."""
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    out["rope_scaling"] = None if cfg.rope_scaling is None else cfg.rope_scaling.__dict__
    return out
