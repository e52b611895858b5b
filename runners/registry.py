"""Every model family the app knows: one line each. See docs/architecture.md, "Add a family"."""

from __future__ import annotations

import models.captioner
import models.gpt
import models.seq2seq
import models.transformer
from models.bert import BertEncoder
from models.captioner import Captioner, CaptionerConfig
from models.checkpoints import load_card, load_checkpoint
from models.gpt import GPT, GPTConfig
from models.llama import Llama
from models.seq2seq import Seq2Seq, Seq2SeqConfig
from models.transformer import Transformer, TransformerConfig
from runners import (
    bert,
    bert_circuits,
    bert_importance,
    captioner,
    captioner_importance,
    gpt,
    gpt_importance,
    llama,
    llama_analysis,
    llama_importance,
    seq2seq,
    seq2seq_circuits,
    seq2seq_importance,
    transformer,
    transformer_importance,
)
from runners.protocol import Family

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(name="seq2seq", title="Seq2seq alignment", page="app_pages/seq2seq.py", icon="🔀",
               example=seq2seq.example, network=Seq2Seq, config=Seq2SeqConfig,
               training=models.seq2seq,
               served=seq2seq.SERVED | seq2seq_importance.SERVED | seq2seq_circuits.SERVED,
               importance=seq2seq_importance.TAB),
        Family(name="transformer", title="Transformer lab", page="app_pages/transformer.py", icon="🧪",
               example=transformer.example, network=Transformer, config=TransformerConfig,
               training=models.transformer, served=transformer.SERVED | transformer_importance.SERVED,
               importance=transformer_importance.TAB),
        Family(name="bert", title="Pretrained BERT", page="app_pages/bert.py", icon="🔬",
               example=bert.example, network=BertEncoder, load=bert.LOAD,
               served=bert.SERVED | bert_importance.SERVED | bert_circuits.SERVED,
               importance=bert_importance.TAB),
        Family(name="captioner", title="Captioning", page="app_pages/captioning.py", icon="🖼️",
               example=captioner.example, network=Captioner, config=CaptionerConfig,
               training=models.captioner, served=captioner.SERVED | captioner_importance.SERVED),
        Family(name="gpt", title="GPT lab", page="app_pages/gpt.py", icon="✍️",
               example=gpt.example, network=GPT, config=GPTConfig, training=models.gpt, load=gpt.LOAD,
               served=gpt.SERVED | gpt_importance.SERVED, importance=gpt_importance.TAB),
        Family(name="llm", title="SmolLM2 (a real LLM)", page="app_pages/llm.py", icon="🦙",
               example=llama.example, network=Llama, load=llama.LOAD,
               served=llama.SERVED | llama_analysis.SERVED | llama_importance.SERVED,
               importance=llama_importance.TAB),
    )
}  # fmt: skip


def load(name: str):
    """A shipped checkpoint by name ("<family>-<task>-<variant>"): (model, card, src vocab, tgt vocab)."""
    family = FAMILIES[load_card(name)["kind"]]
    return load_checkpoint(name, family.network, family.config)
