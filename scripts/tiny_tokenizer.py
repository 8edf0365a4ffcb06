"""A tiny, reproducible EXAONE-4.0-style tokenizer for test models.

The tiny-model training script imports this module to build a tokenizer that
behaves like the real EXAONE 4.0 one where it matters for export testing
(special tokens, chat format, byte-level BPE), while being small enough to
train in seconds on a laptop CPU:

* :func:`stdlib_corpus` reads CPython's own standard library sources, a
  corpus that is present on every machine and needs no download.
* :data:`SPECIAL_TOKENS` are EXAONE 4.0's role / reasoning / tool tokens,
  placed first so that their ids are small and stable
  (``[PAD]`` = 0, ``[BOS]`` = 1, ``[|endofturn|]`` = 2 (EOS), ``[UNK]`` = 3).
* :func:`train_tokenizer` trains a byte-level BPE model (GPT-2 style).
* :data:`CHAT_TEMPLATE` is a Jinja chat template that renders conversations
  in EXAONE 4.0's prompt format (an independent re-implementation of the
  format, not LG's template text).
* :func:`save_tokenizer` writes a Hugging Face tokenizer directory that
  ``transformers.AutoTokenizer.from_pretrained`` can load, byte for byte the
  same on every run.

Everything is deterministic for a given Python installation: the corpus is
read in sorted order, the held-out split uses a content-independent SHA-256
hash of each file's relative path, BPE training is deterministic, and the
saved JSON files have sorted keys and no timestamps.  (Different CPython
versions ship different standard libraries, so the trained vocabulary is only
reproducible across machines with the same Python version.)

Example::

    train, heldout = stdlib_corpus()
    tok = train_tokenizer(train, vocab_size=2048)
    save_tokenizer(tok, pathlib.Path("out/tiny"), model_max_length=4096)
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sysconfig
from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from exaone4.exporter.contract import SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE

# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------

#: Directory names skipped anywhere below the stdlib root: test suites (large
#: and full of odd data), IDLE and lib2to3 (big, unrepresentative), installed
#: third-party packages, and bytecode caches.
EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__"}
)

#: A file goes to the held-out split when ``hash(path) % HELDOUT_MODULUS`` is
#: below ``HELDOUT_THRESHOLD``, i.e. with probability 2%.
HELDOUT_MODULUS = 1000
HELDOUT_THRESHOLD = 20


def _is_heldout(relative_path: str) -> bool:
    """Return True if the file belongs to the held-out split.

    Uses SHA-256 of the POSIX-style relative path (never Python's salted
    ``hash()``), so the split is identical on every run and every machine.
    """
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_MODULUS < HELDOUT_THRESHOLD


def _stdlib_sources(root: pathlib.Path) -> list[str]:
    """List the stdlib ``.py`` files below *root* as sorted POSIX relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow symlinks
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                found.append((pathlib.Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def stdlib_corpus(max_bytes: int = 12_000_000) -> tuple[list[str], list[str]]:
    """Read CPython's standard library sources as a training corpus.

    Files are taken from ``sysconfig.get_paths()["stdlib"]`` in sorted
    relative-path order, skipping the directories in :data:`EXCLUDED_DIRS`
    and any file that is not valid UTF-8.  Reading stops once *max_bytes*
    bytes of source have been collected (the file that crosses the limit is
    still included, so the total may exceed it by less than one file).

    About 2% of the files are held out, chosen by a stable hash of their
    relative path (see :func:`_is_heldout`).

    Args:
        max_bytes: Upper bound on the total size (in UTF-8 bytes) to read.

    Returns:
        ``(train_texts, heldout_texts)``: one string per source file.
    """
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    train: list[str] = []
    heldout: list[str] = []
    total = 0
    for relative in _stdlib_sources(root):
        if total >= max_bytes:
            break
        raw = (root / relative).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        total += len(raw)
        (heldout if _is_heldout(relative) else train).append(text)
    return train, heldout


# --------------------------------------------------------------------------
# Special tokens
# --------------------------------------------------------------------------

PAD_TOKEN = "[PAD]"
BOS_TOKEN = "[BOS]"
EOS_TOKEN = "[|endofturn|]"  # EXAONE 4.0 ends every turn (and generation) with this
UNK_TOKEN = "[UNK]"

#: EXAONE 4.0 special tokens, in id order.  The first four ids are fixed
#: (pad 0, bos 1, eos 2, unk 3); then the role markers, the reasoning block
#: delimiters, and the tool-use tags used by the chat template (``<tool>`` /
#: ``</tool>`` wrap each tool declaration in the system turn).
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    UNK_TOKEN,
    "[|system|]",
    "[|user|]",
    "[|assistant|]",
    "[|tool|]",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_result>",
    "</tool_result>",
    "<tool>",
    "</tool>",
)


def _special_added_tokens() -> list[AddedToken]:
    """SPECIAL_TOKENS as atomic, un-normalized, special AddedTokens."""
    return [
        AddedToken(t, special=True, normalized=False, single_word=False, lstrip=False, rstrip=False)
        for t in SPECIAL_TOKENS
    ]


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Tokenizer:
    """Train a byte-level BPE tokenizer with the EXAONE special tokens.

    The setup is GPT-2 style: text is split by the ByteLevel pre-tokenizer
    (regex split, no added prefix space) into bytes mapped to printable
    characters, the 256-symbol byte alphabet is always in the vocabulary (so
    any input can be encoded and ``[UNK]`` never occurs), and the ByteLevel
    decoder turns tokens back into the exact original text.

    Special tokens get ids ``0 .. len(SPECIAL_TOKENS) - 1`` and are
    registered as special added tokens, so they are matched atomically in
    input text and never split or merged.

    Args:
        texts: Training documents.
        vocab_size: Final vocabulary size, special tokens and bytes included.

    Returns:
        The trained :class:`tokenizers.Tokenizer`.
    """
    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(SPECIAL_TOKENS) + len(byte_alphabet):
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + len(byte_alphabet)}")

    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()

    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_special_added_tokens(),  # first in the vocab, in this order
        initial_alphabet=byte_alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens(_special_added_tokens())  # no-op for ids; makes them atomic + special

    for expected_id, token in enumerate(SPECIAL_TOKENS):
        actual_id = tokenizer.token_to_id(token)
        if actual_id != expected_id:
            raise RuntimeError(f"special token {token!r} got id {actual_id}, expected {expected_id}")
    return tokenizer


def bytes_per_token(tokenizer: Tokenizer, texts: Iterable[str]) -> float:
    """Average number of UTF-8 bytes per token over *texts* (higher = better compression)."""
    texts = list(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))
    return n_bytes / max(n_tokens, 1)


# --------------------------------------------------------------------------
# Chat template
# --------------------------------------------------------------------------

#: Jinja chat template producing the EXAONE 4.0 prompt format:
#:
#: * every turn is ``[|role|]\n`` + content + ``[|endofturn|]\n``;
#: * ``tools`` (JSON-schema dicts) go into the system turn (created if there is
#:   none), one ``<tool>{json}</tool>`` line each, followed by an instruction
#:   to answer with ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``;
#: * an assistant turn always opens with a think block: earlier turns have
#:   their reasoning removed and get the empty block ``<think>\n\n</think>\n\n``
#:   (reasoning is only kept for the final message when ``skip_think=false``);
#:   its ``tool_calls`` follow as ``<tool_call>{json}</tool_call>`` lines;
#: * consecutive ``tool`` messages share one ``[|tool|]`` turn, each result
#:   as ``<tool_result>{"result": json}</tool_result>``, newline-separated;
#: * ``add_generation_prompt`` appends ``[|assistant|]\n<think>\n\n</think>\n\n``
#:   (non-reasoning mode, the default) or ``[|assistant|]\n<think>\n`` when
#:   ``enable_thinking=true`` (reasoning mode).  No BOS token is emitted.
#:
#: Whitespace is controlled with ``-`` markers only, so the output is the same
#: with or without ``trim_blocks`` / ``lstrip_blocks``.  It needs no Jinja
#: extension; the only non-builtin it uses is ``raise_exception`` (supplied
#: by transformers), and only if it is defined (unknown roles are otherwise
#: skipped).  ``tojson`` is Jinja's builtin filter, but transformers replaces
#: it with plain ``json.dumps``; under stock Jinja the JSON parts differ in
#: that keys are sorted and ``<``, ``>``, ``&``, ``'`` become ``\u003c``-style
#: escapes.  Everything else renders identically in both.
CHAT_TEMPLATE = """\
{%- set eot = '[|endofturn|]\\n' -%}
{%- set empty_think = '<think>\\n\\n</think>\\n\\n' -%}
{%- if skip_think is not defined -%}{%- set skip_think = true -%}{%- endif -%}

{#- ---- tool declarations, placed inside the system turn ---- -#}
{%- macro render_tools(tools) -%}
{{- '# Available Tools\\n' -}}
{{- 'You may call any number of the tools below (including none). Each one is described in JSON between <tool> and </tool>:\\n' -}}
{%- for tool in tools -%}
{{- '<tool>' -}}{{- tool | tojson -}}{{- '</tool>\\n' -}}
{%- endfor -%}
{{- '\\nTo call tools, write one JSON object per call, each wrapped in <tool_call> and </tool_call>, for example:\\n' -}}
{{- '<tool_call>{"name": "tool_name", "arguments": {"argument_name": "value"}}</tool_call>' -}}
{%- endmacro -%}

{#- ---- system turn: an explicit first system message and/or the tools ---- -#}
{%- set has_tools = tools is defined and tools -%}
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- if has_system or has_tools -%}
{{- '[|system|]\\n' -}}
{%- if has_system -%}{{- messages[0].content or '' -}}{%- endif -%}
{%- if has_system and has_tools -%}{{- '\\n\\n' -}}{%- endif -%}
{%- if has_tools -%}{{- render_tools(tools) -}}{%- endif -%}
{{- eot -}}
{%- endif -%}

{%- for message in messages -%}
{%- set role = message.role -%}
{%- set content = message.content or '' -%}

{%- if loop.first and has_system -%}
{#- already rendered above -#}

{%- elif role == 'system' or role == 'user' -%}
{{- '[|' ~ role ~ '|]\\n' ~ content ~ eot -}}

{%- elif role == 'assistant' -%}
{{- '[|assistant|]\\n' -}}
{%- if content -%}
{#- Split "<think>reasoning</think>answer"; a reasoning_content field wins. -#}
{%- set reasoning = '' -%}
{%- if '</think>' in content -%}
{%- set reasoning = content.split('</think>')[0].replace('<think>', '').strip() -%}
{%- set content = content.split('</think>')[-1].strip() -%}
{%- endif -%}
{%- if message.reasoning_content -%}{%- set reasoning = message.reasoning_content -%}{%- endif -%}
{%- if loop.last and not skip_think -%}
{{- '<think>\\n' ~ reasoning ~ '\\n</think>\\n\\n' -}}
{%- else -%}
{{- empty_think -}}
{%- endif -%}
{{- content -}}
{%- endif -%}
{%- if message.tool_calls -%}
{{- '\\n' if content else empty_think -}}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{%- set args = fn.arguments if fn.arguments is defined else fn.parameters -%}
{{- '<tool_call>{"name": ' ~ (fn.name | tojson) ~ ', "arguments": ' -}}
{{- args if args is string else (args | tojson) -}}
{{- '}</tool_call>' -}}
{%- if not loop.last -%}{{- '\\n' -}}{%- endif -%}
{%- endfor -%}
{%- endif -%}
{{- eot -}}

{%- elif role == 'tool' -%}
{#- Consecutive tool results share one [|tool|] turn. -#}
{%- if loop.first or loop.previtem.role != 'tool' -%}{{- '[|tool|]\\n' -}}{%- endif -%}
{{- '<tool_result>{"result": ' ~ (message.content | tojson) ~ '}</tool_result>' -}}
{{- eot if loop.last or loop.nextitem.role != 'tool' else '\\n' -}}

{%- elif raise_exception is defined -%}
{{- raise_exception('Unknown role: ' ~ role) -}}
{%- endif -%}
{%- endfor -%}

{%- if add_generation_prompt -%}
{{- '[|assistant|]\\n' -}}
{%- if enable_thinking is defined and enable_thinking is true -%}
{{- '<think>\\n' -}}
{%- else -%}
{{- empty_think -}}
{%- endif -%}
{%- endif -%}
"""


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def _write_json(path: pathlib.Path, obj: dict) -> None:
    """Write *obj* as pretty, key-sorted UTF-8 JSON with a trailing newline."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_tokenizer(tokenizer: Tokenizer, out_dir: pathlib.Path, model_max_length: int) -> None:
    """Write a Hugging Face tokenizer directory for *tokenizer*.

    Creates *out_dir* if needed and writes ``tokenizer.json``,
    ``tokenizer_config.json`` (a ``PreTrainedTokenizerFast`` with the
    EXAONE bos/eos/pad/unk tokens, no automatic BOS, and
    :data:`CHAT_TEMPLATE`) and ``special_tokens_map.json``.  All files are
    deterministic: the config files have sorted keys, and nothing records
    a timestamp or path.

    Args:
        tokenizer: A tokenizer from :func:`train_tokenizer`.
        out_dir: Destination directory.
        model_max_length: Maximum sequence length recorded in the config.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # tokenizer.json in the library's own layout (what Tokenizer.save writes):
    # vocab, merges and added tokens are serialised in id order, so the bytes
    # depend only on the trained model.
    (out_dir / TOKENIZER_FILE).write_text(tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")

    special_tokens_map = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": UNK_TOKEN,
    }
    _write_json(
        out_dir / TOKENIZER_CONFIG_FILE,
        {
            **special_tokens_map,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": int(model_max_length),
            "clean_up_tokenization_spaces": False,
            "add_bos_token": False,
            "add_eos_token": False,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(out_dir / SPECIAL_TOKENS_FILE, special_tokens_map)
