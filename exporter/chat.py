"""Tokenizer and chat template of a checkpoint, without transformers.

The tokenizer is `tokenizer.json` read with the `tokenizers` library. The chat
template comes from `chat_template.jinja` or `tokenizer_config.json`, as
transformers stores it, and is rendered in Jinja's immutable sandbox: a template
is text from the internet and must not reach Python objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from .errors import InputError


@dataclass
class ChatTokenizer:
    """A checkpoint's tokenizer plus its chat template and special tokens."""

    tokenizer: Tokenizer
    chat_template: str | None
    special: dict[str, str]

    @classmethod
    def open(cls, directory: Path) -> ChatTokenizer:
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise InputError(str(path), "tokenizer.json not found (needed to turn text into tokens)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise InputError(str(path), f"not a readable tokenizer ({exc})") from None
        config = _read_json(directory / "tokenizer_config.json")
        template_file = directory / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
        template = template or config.get("chat_template")
        special = {
            key: _token_text(config.get(key))
            for key in ("bos_token", "eos_token", "pad_token", "unk_token")
            if config.get(key) is not None
        }
        return cls(tokenizer=tokenizer, chat_template=template, special=special)

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
        """Apply the chat template the way transformers' `apply_chat_template` does."""
        if not self.chat_template:
            raise InputError("tokenizer_config.json: chat_template", "the checkpoint has no chat template")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_template_error
        try:
            template = env.from_string(self.chat_template)
            return template.render(
                messages=messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                enable_thinking=enable_thinking,
                **self.special,
            )
        except TemplateError as exc:
            raise InputError("chat_template", f"cannot be rendered ({exc})") from None


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


def _token_text(value: Any) -> str:
    return value["content"] if isinstance(value, dict) else str(value)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(str(path), "must hold a JSON object")
    return data
