"""A checkpoint's own tokenizer and chat template, read with HF ``tokenizers`` and ``jinja2`` — the same
pieces transformers assembles, so our ids equal its ids.

- A Hugging Face folder: ``tokenizer.json`` as it is (transformers 5 uses it as is too); the chat template
  from ``chat_template.jinja`` or ``tokenizer_config.json``.
- A GGUF file: the vocabulary in its metadata, built as transformers' GGUF converter builds it
  (``integrations/gguf/gguf_tokenizer_mapping.py``): ``tokenizer.ggml.model`` "gpt2" is byte-level BPE split
  by the file's ``pre`` regex; "llama" is SentencePiece-style BPE with byte fallback (Gemma's variant with
  its whitespace tokens and merges rebuilt from token order). One deliberate difference: SmolLM's "smollm"
  pre-tokenizer splits every digit first, as llama.cpp (which wrote the file) does; transformers has no
  entry for it.
- Chat templates are rendered as transformers renders them: a sandboxed jinja2 environment with
  ``trim_blocks``/``lstrip_blocks``, loop controls, its ``tojson``, ``raise_exception`` and ``strftime_now``,
  and the special tokens (``bos_token``, ``eos_token`` …) as variables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

from models.checkpoints import CheckpointError, read_json

CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types
# llama.cpp's pre-tokenizer names → the split regex transformers uses for them (its table, in part).
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")  # fmt: skip
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
         r"|\s+(?!\S)|\s+")  # fmt: skip
SPLITS = {"llama3": LLAMA3, "llama-v3": LLAMA3, "llama-bpe": LLAMA3, "smaug-bpe": LLAMA3, "qwen2": QWEN2,
          "deepseek-r1-qwen": QWEN2}  # fmt: skip
TOKENIZER_FIX = "put the model's tokenizer.json beside its config.json (it comes with the model)"


@dataclass(frozen=True)
class CheckpointTokenizer:
    tokenizer: Tokenizer
    chat_template: str | None
    stop_ids: frozenset[int]  # end of sequence / end of turn
    special: dict = field(default_factory=dict)  # bos_token, eos_token, unk_token, pad_token: their text


# --- Hugging Face folders --------------------------------------------------------------------------
def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json spells it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value if isinstance(value, str) else None


def _template(value) -> str | None:
    """tokenizer_config.json's chat_template: one string, or named templates (the "default" one)."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        return named.get("default")
    return value if isinstance(value, str) else None


def hf_tokenizer(folder: Path) -> CheckpointTokenizer:
    """The folder's ``tokenizer.json`` with its chat template and stop tokens. A missing or unreadable
    tokenizer is a `CheckpointError` (a model without its tokenizer cannot be read)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(path, "the model has no tokenizer.json", TOKENIZER_FIX)
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a plain Exception on bad JSON
        raise CheckpointError(path, f"not a readable tokenizer.json ({err})", TOKENIZER_FIX) from err
    config = (
        read_json(folder / "tokenizer_config.json", TOKENIZER_FIX)
        if (folder / "tokenizer_config.json").is_file()
        else {}
    )
    jinja = folder / "chat_template.jinja"
    template = (
        jinja.read_text(encoding="utf-8") if jinja.is_file() else _template(config.get("chat_template"))
    )
    special = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    stops = {tokenizer.token_to_id(special["eos_token"])} if special["eos_token"] else set()
    return CheckpointTokenizer(tokenizer, template, frozenset(stops - {None}), special)


# --- GGUF files ------------------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (the byte-level alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(extra)}}


def generate_merges(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """The merges a vocabulary implies when the file lists none: every split of a token into two tokens,
    best score first (transformers' ``generate_merges``, with the same tie-breaks)."""
    merges = []
    for token, score in scores.items():
        local = [
            (token[:i], token[i:], score)
            for i in range(1, len(token))
            if token[:i] in vocab and token[i:] in vocab
        ]
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(a, b) for a, b, _ in merges]


def _byte_level(meta: dict) -> Tokenizer:
    """tokenizer.ggml.model "gpt2": byte-level BPE, split as the file's ``pre`` says."""
    alphabet, spelling = set(_bytes_to_unicode().values()), _bytes_to_unicode()
    tokens = [t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))
              for t in meta["tokenizer.ggml.tokens"]]  # fmt: skip
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    pre = meta.get("tokenizer.ggml.pre")
    if pre == "smollm":  # llama.cpp: every digit alone, then GPT-2's split
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    elif pre in SPLITS:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(SPLITS[pre]), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )  # fmt: skip
    else:  # "gpt2", "default" and the rest: GPT-2's own regex
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece(meta: dict, gemma: bool) -> Tokenizer:
    """tokenizer.ggml.model "llama": SentencePiece-style BPE, byte fallback (Llama, Mistral) or Gemma's."""
    tokens = list(meta["tokenizer.ggml.tokens"])
    if gemma:  # runs of spaces are stored as spaces; Gemma looks them up as ▁…
        tokens = ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]
    vocab = {t: i for i, t in enumerate(tokens)}
    if "tokenizer.ggml.merges" in meta:
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    else:
        scores = (
            {t: -i for i, t in enumerate(tokens)}
            if gemma
            else dict(zip(tokens, meta["tokenizer.ggml.scores"], strict=True))
        )
        merges = generate_merges(vocab, scores)
    if gemma:
        unk = tokens[meta.get("tokenizer.ggml.unknown_token_id", 3)]
        tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=True, unk_token=unk, byte_fallback=True))
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        )
        return tok
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1)])  # fmt: skip
    return tok


GGUF_SPECIAL = {"bos": "bos_token", "eos": "eos_token", "unknown": "unk_token", "padding": "pad_token"}


def gguf_special(meta: dict) -> dict:
    """bos_token, eos_token, unk_token, pad_token: their text in a GGUF file's vocabulary (None where unset),
    the variables its chat template reads."""
    tokens = meta["tokenizer.ggml.tokens"]
    ids = {name: meta.get(f"tokenizer.ggml.{k}_token_id") for k, name in GGUF_SPECIAL.items()}
    return {name: tokens[i] if i is not None and 0 <= i < len(tokens) else None for name, i in ids.items()}


def gguf_tokenizer(meta: dict, path: Path | None = None) -> CheckpointTokenizer:
    """The tokenizer a GGUF file's metadata describes, with its control tokens whole, BOS added where the
    file says (a SentencePiece vocabulary that says nothing adds it, as llama.cpp does), and its template."""
    path = Path(path or "model.gguf")
    kind = meta.get("tokenizer.ggml.model")
    if "tokenizer.ggml.tokens" not in meta:
        raise CheckpointError(
            path, "the GGUF file holds no tokenizer", "use a GGUF that includes its vocabulary"
        )
    if kind == "gpt2":
        tok = _byte_level(meta)
    elif kind == "llama":
        tok = _sentencepiece(meta, gemma=str(meta.get("general.architecture", "")).startswith("gemma"))
    else:
        raise CheckpointError(path, f"its tokenizer type {kind!r} is not supported (only gpt2 and llama)",
                              "use the model's Hugging Face folder instead")  # fmt: skip
    tokens, kinds = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type") or ()
    alphabet = set(_bytes_to_unicode().values()) if kind == "gpt2" else None
    control = [
        t
        for t, k in zip(tokens, kinds, strict=False)
        if k == CONTROL and (alphabet is None or set(t) <= alphabet)
    ]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    vocab = tok.get_vocab()
    user = [t for t, k in zip(tokens, kinds, strict=False) if k == USER_DEFINED and t in vocab]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
    ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")}
    special = gguf_special(meta)
    if meta.get("tokenizer.ggml.add_bos_token", kind == "llama") and special["bos_token"] is not None:
        bos = special["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, ids["bos"])]
        )
    stops = frozenset(i for i in (ids["eos"], meta.get("tokenizer.ggml.eot_token_id")) if i is not None)
    return CheckpointTokenizer(tok, meta.get("tokenizer.chat_template"), stops, special)


# --- Chat templates ----------------------------------------------------------------------------------
def render_chat(template: str, messages: list[dict], *, add_generation_prompt: bool = True,
                special: dict | None = None) -> str:  # fmt: skip
    """The conversation as the model's chat template writes it, rendered as transformers'
    ``apply_chat_template`` renders it. A template that fails (its own ``raise_exception``, a syntax error)
    raises ``ValueError`` with the template's message."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):  # {% generation %}…{% endgeneration %}: rendered as its body
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    variables = {k: v for k, v in (special or {}).items() if v is not None}
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **variables
        )
    except jinja2.exceptions.TemplateError as err:
        raise ValueError(f"the model's chat template refused the conversation: {err}") from err
