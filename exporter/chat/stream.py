"""Generated tokens to text as it becomes visible, for streaming.

Decoding token by token splits multi-byte characters and merges that byte-level
BPE resolves only once the next token arrives, so the text is decoded whole each
time and only what grew is emitted. Special tokens are kept (`<think>`,
`<tool_call>` are what the response parser reads); stop tokens never enter.
"""

from __future__ import annotations

from .tokenizer import ChatTokenizer


class TextStream:
    def __init__(self, chat: ChatTokenizer) -> None:
        self.chat = chat
        self.tokens: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        """Add a token; returns the text it made visible (may be empty)."""
        self.tokens.append(token)
        text = self.chat.decode(self.tokens)
        if text.endswith("\ufffd"):
            return ""  # the bytes of a character still incomplete
        return self._advance(text)

    def flush(self) -> str:
        """What is left once generation ends (an incomplete character shows as U+FFFD)."""
        return self._advance(self.chat.decode(self.tokens))

    def _advance(self, text: str) -> str:
        if len(text) <= len(self.text):
            return ""
        piece, self.text = text[len(self.text) :], text
        return piece
