"""A chat template rendered as transformers renders it, in Jinja's immutable sandbox.

A template is text from the internet: the sandbox keeps it from Python objects.
The environment matches transformers' `apply_chat_template`: `trim_blocks` and
`lstrip_blocks`, the `loopcontrols` extension, a `tojson` filter that keeps
non-ASCII text, and the `raise_exception(message)` and `strftime_now(format)` globals. A template that does not
compile, or raises while rendering, is an InputError naming where it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Template
from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import InputError


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # the template text
    origin: str  # the file (and key) it was read from, for messages
    compiled: Template

    @classmethod
    def compile(cls, source: str, origin: str) -> ChatTemplate:
        try:
            return cls(source, origin, _environment().from_string(source))
        except TemplateError as exc:
            raise InputError(origin, f"does not compile as a Jinja template ({exc})") from None

    def render(self, messages: list[dict[str, Any]], **context: Any) -> str:
        try:
            return self.compiled.render(messages=messages, **context)
        except TemplateError as exc:
            raise InputError(self.origin, f"cannot render this conversation ({exc})") from None


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_template_error
    env.globals["strftime_now"] = _strftime_now
    return env


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False) -> str:
    """transformers' `tojson`: its argument order, and non-ASCII text kept as is."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)
