"""What the shared circuit analyses (`runners.circuits`, `runners.patching`) read from a decoder, as a
`typing.Protocol`: any network that has these names can be analysed, whatever its family. `models.gpt.GPT`
and every `models.decoder.Decoder` satisfy it (tests/test_lm_contract.py checks each, by structure and by
running a patched, resumed forward).

Direct attribution reads the final residual stream as a sum of terms — the embeddings, each head's
W_O slice, W_O's bias, each MLP's output — passed through the final norm as a linear map. Two properties say
where that holds exactly:

- ``heads_sum_to_stream``: True when what a layer adds to the stream is its heads' W_O slices plus W_O's
  bias. Gemma 2 is False: its post-attention RMSNorm adds γ ⊙ (Σ heads + b) / rms(Σ heads + b), a norm of the
  sum, so one head's term is its slice through that norm taken as a linear map at the scale the run computed
  (``blocks[i].post_attn_norm`` and the trace's ``attention.output`` give a caller both), not the slice
  alone; likewise its MLP term is ``resid_post − resid_mid`` as is (post-norm included).
- ``logit_softcap``: None, or c when the logits are c · tanh(readout / c) (Gemma 2): the target − rival
  logit difference is then additive over terms only before the cap.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from torch import Tensor, nn

from models.attention import MultiHeadAttention, MultiHeadTrace
from models.interventions import Capture, Interventions
from models.patching import Patch

# The forward's keyword arguments the analyses pass.
FORWARD_ARGUMENTS = ("iv", "return_trace", "capture", "trace_layers", "logits", "patch", "resume")


class CircuitBlock(Protocol):
    attn: MultiHeadAttention  # the core's attention: w_o, head_slice, n_heads, d_head, kv_heads


@runtime_checkable
class CircuitTrace(Protocol):
    @property
    def streams(self) -> tuple[tuple[Tensor, Tensor, Tensor], ...]:
        """Per layer run: (resid_pre, resid_mid, resid_post), each (B, T, d)."""
        ...

    @property
    def attentions(self) -> tuple[MultiHeadTrace | None, ...]:
        """Per layer run: its attention trace (None outside ``trace_layers``); ``.concat`` holds the heads."""
        ...


@runtime_checkable
class CircuitModel(Protocol):
    blocks: Sequence[CircuitBlock]
    heads_sum_to_stream: bool
    logit_softcap: float | None

    @property
    def final_norm(self) -> nn.Module:
        """The norm the readout applies first (RMSNorm or LayerNorm: `runners.circuits.norm_as_linear`)."""
        ...

    @property
    def unembedding(self) -> Tensor:
        """(V, d) the rows the normed stream is read out with (its device is the model's)."""
        ...

    def readout(self, x: Tensor) -> Tensor:
        """(…, d) stream → (…, V) logits, exactly as the forward ends."""
        ...

    def embedding_terms(self, ids: Tensor, iv: Interventions = ...) -> dict[str, Tensor]:
        """The stream entering layer 0 as the terms it sums, each (B, T, d)."""
        ...

    def __call__(
        self, ids: Tensor, *, iv: Interventions = ..., return_trace: bool = ..., capture: Capture = ...,
        trace_layers: Collection[int] | None = ..., logits: Literal["all", "last"] = ...,
        patch: Patch | None = ..., resume: tuple[int, Tensor] | None = ..., **kw: Any,
    ) -> tuple[Tensor, CircuitTrace | None]:  # fmt: skip
        """(logits (B, T or 1, V), the trace when asked); ``resume`` = (layer, stream in) starts there."""
        ...
