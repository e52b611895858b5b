"""Transformer lab: a small trained encoder–decoder transformer in head-count variants and a post-norm
twin, with the whole block walked through, live toggles and the material's lessons."""

import models.transformer
from analysis.protocol import Family
from families.transformer import importance, runner
from models.transformer import Transformer, TransformerConfig

FAMILY = Family(
    name="transformer", title="Transformer lab", page="families/transformer/page.py", url_path="transformer",
    icon="🧪", example=runner.example, network=Transformer, config=TransformerConfig,
    training=models.transformer, served=runner.SERVED | importance.SERVED, importance=importance.TAB,
)  # fmt: skip
