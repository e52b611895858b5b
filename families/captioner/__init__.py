"""Captioning: Show, Attend and Tell, trained here on scenes drawn the way people draw."""

import models.captioner
from analysis.protocol import Family
from families.captioner import importance, runner
from models.captioner import Captioner, CaptionerConfig

FAMILY = Family(
    name="captioner", title="Captioning", page="families/captioner/page.py", url_path="captioning", icon="🖼️",
    example=runner.example, network=Captioner, config=CaptionerConfig, training=models.captioner,
    served=runner.SERVED | importance.SERVED,
)  # fmt: skip
