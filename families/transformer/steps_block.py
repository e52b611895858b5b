"""The transformer's step "the whole block": the residual stream through the encoder of the pre-norm
model and of its post-norm twin (same data, seed and schedule), from the page's own runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from analysis.family import Family, Query, Quiz, Step
from families.transformer.runner import TransformerRun
from models.attention import Interventions
from models.checkpoints import checkpoint_name
from views.serving import cached
from viz.charts import lines

TWINS = ("h4", "h4-post")  # the pre-norm model and its post-norm twin


@dataclass(frozen=True)
class Block:
    pre: TransformerRun
    post: TransformerRun

    def stream(self, run: TransformerRun) -> tuple[list[str], list[float]]:
        """The mean row norm ‖x‖ of the encoder's residual stream: entering layer 0, then after each
        sublayer (the model's own stream vectors)."""
        layers = run.layers["encoder"]
        stages, norms = ["embedding + positions"], [layers[0].self_attention.x_in]
        for i, layer in enumerate(layers):
            stages += [f"L{i} + attention", f"L{i} + feed-forward"]
            norms += [layer.self_attention.x_out, layer.feed_forward.x_out]
        return stages, [float(np.linalg.norm(x, axis=-1).mean()) for x in norms]


def block_step(read: Callable[[Query], Any]) -> Step:
    """The step, on the page's inputs as ``read`` (the transformer steps' URL reader) finds them."""

    def measure(family: Family, query: Query) -> Block:
        source = read(query)
        names = (checkpoint_name("transformer", source.task.name, variant) for variant in TWINS)
        run = cached(family, "run")
        return Block(*(run(name, source.tokens, Interventions(), None, 0) for name in names))

    def view(result: Block, key: str) -> None:
        curves = {"pre-norm": result.stream(result.pre), "post-norm": result.stream(result.post)}
        figure = lines(curves, x_title="stage", y_title="mean ‖x‖ of the residual stream",
                       title="The encoder's residual stream, sublayer by sublayer")  # fmt: skip
        st.plotly_chart(figure, key=f"{key}_stream")

    def quiz(result: Block) -> Quiz:
        (_, pre), (_, post) = result.stream(result.pre), result.stream(result.post)
        ratio = pre[-1] / post[-1]
        feedback = (
            f"After the last sublayer the pre-norm stream's rows have mean norm {pre[-1]:.2f}, the post-norm "
            f"twin's {post[-1]:.2f}: {ratio:.2f}×. Post-norm re-normalises x + f(x) after every sublayer "
            f"(its stream stays between {min(post):.2f} and {max(post):.2f}); pre-norm normalises only what "
            f"a sublayer reads and adds the result, so its stream grows ({pre[0]:.2f} → {pre[-1]:.2f}) and "
            "the identity path from input to output is never rescaled — why it trains without learning-rate "
            "warm-up (the Post- vs pre-norm tab has the experiment)."
        )
        question = ("After the encoder's last sublayer, how many times longer are the pre-norm model's "
                    "stream rows than the post-norm twin's (mean ‖x‖, pre ÷ post)?")  # fmt: skip
        return Quiz(question, ratio, feedback, tolerance=0.03)

    typed = {"input": "text", "text": "saturday, 21 november 2026"}
    return Step(
        id="block", idea="The whole block: residuals, pre- vs post-norm, warm-up",
        explain=(
            "A block is two sublayers, attention and a feed-forward network, each of which adds its result "
            "to a residual stream: x ← x + f(x). Where the layer norm goes matters. The original "
            "transformer normalised after the add (post-norm) and needed a learning-rate warm-up to "
            "train; most models now normalise what each sublayer reads (pre-norm). Both twins here were "
            "trained on the same data with the same seed."
        ),
        look_for="which twin's stream keeps growing, and which is pulled back after every sublayer.",
        query={**typed, "tf_view": "Post- vs pre-norm"}, contrast={"input": "text", "text": "11/17/2026"},
        measure=measure, view=view, quiz=quiz,
        deeper="training curves, gradient norms and the warm-up experiment",
        more={"Walkthrough of one block": {**typed, "tf_view": "Walkthrough"}},
    )  # fmt: skip
