"""Pretrained BERT: all-MiniLM-L6-v2 (shipped by a wheel) on our own encoder."""

from analysis.protocol import Family
from families.bert import circuits, importance, runner
from models.bert import BertEncoder

FAMILY = Family(
    name="bert", title="Pretrained BERT", page="families/bert/page.py", url_path="bert", icon="🔬",
    example=runner.example, network=BertEncoder, load=runner.LOAD,
    served=runner.SERVED | importance.SERVED | circuits.SERVED, importance=importance.TAB,
)  # fmt: skip
