"""A checkpoint's tokenizer, chat template and stop tokens, without transformers.

    chat = ChatTokenizer.open(directory)
    ids = chat.encode(chat.render(messages, enable_thinking=False, tools=None))
    chat.stop_ids  # generation stops on any of these

The tokenizer is `tokenizer.json` read with the `tokenizers` library. The chat
template comes from `chat_template.jinja` (where LG publishes it) or from the
`chat_template` key of `tokenizer_config.json` (where older transformers wrote
it), the file first, as transformers reads them; it is rendered by `template.py`.
Stop tokens are `generation_config.json`'s `eos_token_id` (an int or a list),
else `config.json`'s, plus `[|endofturn|]`, the token that closes every turn.

Opening checks what would otherwise fail mid-request: special tokens named in
tokenizer_config.json that the vocabulary lacks, an `eos_token_id` that is not an
int or a list of ints, a template that does not compile, no stop token at all.
Each is an InputError naming the file and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..contract import (
    CHAT_TEMPLATE_FILE,
    CONFIG_FILE,
    GENERATION_CONFIG_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)
from ..errors import InputError
from ..jsonfile import read_json
from .template import ChatTemplate

END_OF_TURN = "[|endofturn|]"
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


@dataclass(frozen=True)
class ChatTokenizer:
    """A checkpoint's tokenizer plus its chat template, special tokens and stop ids."""

    tokenizer: Tokenizer
    template: ChatTemplate | None
    special: dict[str, str]  # bos_token / eos_token / ... -> token text, as the template sees them
    stop_ids: frozenset[int]

    @classmethod
    def open(cls, directory: Path) -> ChatTokenizer:
        directory = Path(directory)
        tokenizer = _read_tokenizer(directory / TOKENIZER_FILE)
        config = _read_object(directory / TOKENIZER_CONFIG_FILE)
        special = _special_tokens(config, tokenizer, directory / TOKENIZER_CONFIG_FILE)
        template = _read_template(directory, config)
        return cls(tokenizer, template, special, _stop_ids(directory, tokenizer))

    @property
    def chat_template(self) -> str | None:
        return self.template.source if self.template else None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_id(self, text: str) -> int | None:
        return self.tokenizer.token_to_id(text)

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The conversation as the model sees it, the way transformers' `apply_chat_template` renders it."""
        if self.template is None:
            missing = f"the checkpoint has no chat template (nor a chat_template key in {TOKENIZER_CONFIG_FILE})"
            raise InputError(CHAT_TEMPLATE_FILE, missing)
        return self.template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                    enable_thinking=enable_thinking, **self.special)

    def prompt_ids(self, messages: list[dict[str, Any]], *, enable_thinking: bool = False,
                   tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Token ids of the rendered conversation, ready to prefill."""
        return self.encode(self.render(messages, enable_thinking=enable_thinking, tools=tools))


def _read_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise InputError(str(path), f"{TOKENIZER_FILE} not found (needed to turn text into tokens)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise InputError(str(path), f"not a readable tokenizer ({exc})") from None


def _read_object(path: Path) -> dict[str, Any]:
    """A JSON object from an optional file ({} when absent)."""
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(str(path), "must hold a JSON object")
    return data


def _token_text(value: Any) -> str:
    return value["content"] if isinstance(value, dict) else str(value)


def _special_tokens(config: dict[str, Any], tokenizer: Tokenizer, path: Path) -> dict[str, str]:
    """bos/eos/pad/unk token texts; each must be a token of the vocabulary, or it would be split into pieces."""
    special = {key: _token_text(config[key]) for key in SPECIAL_TOKEN_KEYS if config.get(key) is not None}
    for key, text in special.items():
        if tokenizer.token_to_id(text) is None:
            raise InputError(f"{path}: {key}", f"{text!r} is not a token of {TOKENIZER_FILE}")
    added = config.get("added_tokens_decoder") or {}
    if not isinstance(added, dict):
        raise InputError(f"{path}: added_tokens_decoder", "must be an object of token id -> token")
    for token_id, token in added.items():
        text = _token_text(token)
        if str(tokenizer.token_to_id(text)) != str(token_id):
            raise InputError(f"{path}: added_tokens_decoder", f"token {token_id} {text!r} is not token {token_id} of {TOKENIZER_FILE}")
    return special


def _read_template(directory: Path, config: dict[str, Any]) -> ChatTemplate | None:
    path = directory / CHAT_TEMPLATE_FILE
    if path.is_file():
        try:
            return ChatTemplate.compile(path.read_text(encoding="utf-8"), str(path))
        except UnicodeDecodeError as exc:
            raise InputError(str(path), f"is not UTF-8 text ({exc})") from None
    text = config.get("chat_template")
    if text is None:
        return None
    if not isinstance(text, str):  # a list of named templates: EXAONE 4 ships one
        raise InputError(f"{directory / TOKENIZER_CONFIG_FILE}: chat_template", "must be a template string")
    return ChatTemplate.compile(text, f"{directory / TOKENIZER_CONFIG_FILE}: chat_template")


def eos_ids(value: Any, where: str) -> tuple[int, ...]:
    """An `eos_token_id` field (an int or a list of ints) as a tuple; InputError otherwise."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
        raise InputError(where, f"must be a token id or a list of token ids, got {str(value)[:80]}")
    return tuple(items)


def _stop_ids(directory: Path, tokenizer: Tokenizer) -> frozenset[int]:
    """generation_config.json's eos ids (else config.json's), plus [|endofturn|]; at least one."""
    ids: tuple[int, ...] = ()
    for name in (GENERATION_CONFIG_FILE, CONFIG_FILE):
        value = _read_object(directory / name).get("eos_token_id")
        if value is not None:
            ids = eos_ids(value, f"{directory / name}: eos_token_id")
            break
    end_of_turn = tokenizer.token_to_id(END_OF_TURN)
    stops = frozenset(ids) | ({end_of_turn} if end_of_turn is not None else frozenset())
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    outside = sorted(i for i in stops if i >= vocab)
    if outside:
        raise InputError(f"{directory / GENERATION_CONFIG_FILE}: eos_token_id", f"{outside} outside the vocabulary of {vocab}")
    if not stops:
        raise InputError(str(directory), f"no stop token: no eos_token_id in {GENERATION_CONFIG_FILE} or {CONFIG_FILE}, "
                         f"and no {END_OF_TURN} in {TOKENIZER_FILE}")
    return stops
