"""Split generated text into reasoning, answer and tool calls.

EXAONE 4 writes its reasoning in a `<think>...</think>` block (opened by the
prompt in reasoning mode, so the generated text may hold only the closing tag)
and each tool call as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.
A tool call whose body is not a JSON object with a string `name` is an error
naming the call, not a silently dropped call.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from ..errors import InputError

TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@dataclass
class ParsedResponse:
    content: str
    reasoning: str | None = None
    tool_calls: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_response(text: str, thinking_opened: bool = False) -> ParsedResponse:
    """`thinking_opened`: the prompt already opened `<think>` (reasoning mode)."""
    reasoning = None
    body = text
    if "</think>" in body:
        head, body = body.split("</think>", 1)
        if "<think>" in head or thinking_opened:
            reasoning = head.split("<think>", 1)[-1].strip()
    elif thinking_opened:  # reasoning was cut off before the block closed
        return ParsedResponse(content="", reasoning=body.replace("<think>", "").strip())
    calls = []
    for index, match in enumerate(TOOL_CALL.finditer(body)):
        raw = match.group(1).strip()
        try:
            call = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"tool call {index + 1}", f"is not valid JSON ({exc.msg} at character {exc.pos}): {raw[:80]!r}") from None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise InputError(f"tool call {index + 1}", f"needs a JSON object with a string 'name', got {raw[:80]!r}")
        arguments = call.get("arguments", call.get("parameters", {}))
        calls.append({"name": call["name"], "arguments": arguments})
    content = TOOL_CALL.sub("", body).strip()
    return ParsedResponse(content=content, reasoning=reasoning, tool_calls=calls)
