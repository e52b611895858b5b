"""GPT lab: a small GPT of our own, trained here on the Python standard library's source."""

import models.gpt
from analysis import lm_circuits
from analysis.protocol import Family
from families.gpt import importance, runner
from models.gpt import GPT, GPTConfig

FAMILY = Family(
    name="gpt", title="GPT lab", page="families/gpt/page.py", url_path="gpt", icon="✍️",
    example=runner.example, network=GPT, config=GPTConfig, training=models.gpt, load=runner.LOAD,
    served=runner.SERVED | importance.SERVED | lm_circuits.SERVED, importance=importance.TAB,
)  # fmt: skip
