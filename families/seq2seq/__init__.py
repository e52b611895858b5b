"""Seq2seq alignment: a trained bidirectional-GRU encoder–decoder with four scoring functions, its
alignment, the RNN through time and the fixed-vector bottleneck."""

import models.seq2seq
from analysis.protocol import Family
from families.seq2seq import circuits, importance, runner
from models.seq2seq import Seq2Seq, Seq2SeqConfig

FAMILY = Family(
    name="seq2seq", title="Seq2seq alignment", page="families/seq2seq/page.py", url_path="seq2seq", icon="🔀",
    example=runner.example, network=Seq2Seq, config=Seq2SeqConfig, training=models.seq2seq,
    served=runner.SERVED | importance.SERVED | circuits.SERVED, importance=importance.TAB,
)  # fmt: skip
