"""A generation request's inputs (named as in the TensorRT-LLM Triton ensemble), read and validated.

Both Triton layouts read requests here: the BLS generation model and the resident
engine. `ChatRequest.read` takes a function giving an input's first element (or
None when the request lacks it), so this module knows nothing of Triton; bad
input is an InputError naming the tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..chat import ChatTokenizer, Sampling, conversation, read_messages, read_tools
from ..errors import InputError

TEXT_INPUT, MESSAGES, MAX_TOKENS, TOOLS = "text_input", "messages", "max_tokens", "tools"
TEXT_OUTPUT, TOOL_CALLS = "text_output", "tool_calls"
DEFAULT_MAX_TOKENS = 64
# (name, dtype, optional) of the generation models' inputs, in the order config.pbtxt lists them
GENERATION_INPUTS = (
    (TEXT_INPUT, "string", True),
    (MESSAGES, "string", True),  # a JSON list of chat messages, instead of text_input
    (MAX_TOKENS, "int32", False),
    ("temperature", "float32", True),
    ("top_p", "float32", True),
    ("top_k", "int32", True),
    ("random_seed", "uint64", True),
    ("enable_thinking", "bool", True),
    (TOOLS, "string", True),  # a JSON list of tool schemas
)
GENERATION_OUTPUTS = (TEXT_OUTPUT, TOOL_CALLS)

Value = Callable[[str], Any]  # an input's first element, or None when absent


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    thinking: bool
    max_tokens: int
    sampling: Sampling

    @classmethod
    def read(cls, value: Value) -> ChatRequest:
        """From a request's inputs; InputError on an empty prompt, both prompts, bad JSON, max_tokens < 1."""
        text, messages = _text(value, TEXT_INPUT), _text(value, MESSAGES)
        if bool(text and text.strip()) == bool(messages):
            raise InputError(TEXT_INPUT, "is empty" if not messages else "give text_input or messages, not both")
        turns = read_messages(messages, MESSAGES) if messages else conversation(text)
        tools_text = _text(value, TOOLS)
        max_tokens = int(_or(value, MAX_TOKENS, DEFAULT_MAX_TOKENS))
        if max_tokens < 1:
            raise InputError(MAX_TOKENS, f"must be at least 1, got {max_tokens}")
        sampling = Sampling(temperature=float(_or(value, "temperature", 0.0)), top_k=int(_or(value, "top_k", 0)),
                            top_p=float(_or(value, "top_p", 1.0)), seed=int(_or(value, "random_seed", 0)))
        return cls(turns, read_tools(tools_text, TOOLS) if tools_text else None,
                   bool(_or(value, "enable_thinking", False)), max_tokens, sampling)

    def prompt_ids(self, chat: ChatTokenizer) -> list[int]:
        """The conversation rendered with the chat template and tokenized."""
        return chat.prompt_ids(self.messages, enable_thinking=self.thinking, tools=self.tools)


def _or(value: Value, name: str, default: Any) -> Any:
    found = value(name)
    return default if found is None else found


def _text(value: Value, name: str) -> str | None:
    found = value(name)
    return found.decode("utf-8") if isinstance(found, bytes) else found
