"""A real LLM: SmolLM2-135M-Instruct from its GGUF, on our own attention core."""

from analysis import lm_circuits
from analysis.protocol import Family
from families.llm import analysis, importance, runner
from models.llama import Llama

FAMILY = Family(
    name="llm", title="SmolLM2 (a real LLM)", page="families/llm/page.py", url_path="llm", icon="🦙",
    example=runner.example, network=Llama, load=runner.LOAD, importance=importance.TAB,
    served=runner.SERVED | analysis.SERVED | importance.SERVED | lm_circuits.SERVED,
)  # fmt: skip
