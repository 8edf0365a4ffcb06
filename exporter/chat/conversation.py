"""Conversations and tool lists from user input (a CLI file, a Triton request), validated.

A conversation is a list of messages `{"role": ..., "content": ...}` (plus, for the
assistant, optional `tool_calls` and `reasoning_content`), as transformers'
`apply_chat_template` takes them; tools are a list of JSON schemas. Malformed input
is an InputError naming where it came from, never a template error later.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError

ROLES = ("system", "user", "assistant", "tool")


def conversation(prompt: str, system: str | None = None) -> list[dict[str, Any]]:
    """One user turn, after an optional system message."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def read_messages(text: str, where: str) -> list[dict[str, Any]]:
    """A JSON list of messages, each with a known role and string (or null) content."""
    messages = _json_list(text, where)
    if not messages:
        raise InputError(where, "holds no messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InputError(where, f"message {index} needs a role among {', '.join(ROLES)}")
        if not isinstance(message.get("content"), (str, type(None))):
            raise InputError(where, f"message {index}: content must be a string")
    return messages


def read_tools(text: str, where: str) -> list[dict[str, Any]]:
    """A JSON list of tool schemas (objects)."""
    tools = _json_list(text, where)
    if not all(isinstance(t, dict) for t in tools):
        raise InputError(where, "must hold a JSON list of tool schemas (objects)")
    return tools


def _json_list(text: str, where: str) -> list:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(where, f"is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(value, list):
        raise InputError(where, "must hold a JSON list")
    return value
