"""One request's tokens as streamed text, and its tool calls at the end: the Client the Triton glue subclasses.

Tokens become text with the chat path's `TextStream` (whole-text decoding, so
multi-byte characters and BPE merges come out right); when tools were offered,
the end carries the `<tool_call>`s parsed from the whole answer. Subclasses say
how to send: a Triton response sender in the engine, a list in tests.
"""

from __future__ import annotations

from ..chat import ChatTokenizer, TextStream, parse_response
from .requests import Client, Finish


class TextClient(Client):
    def __init__(self, chat: ChatTokenizer, tools_given: bool) -> None:
        self.stream = TextStream(chat)
        self.tools_given = tools_given
        self.text = ""

    def send_text(self, piece: str) -> None:
        raise NotImplementedError

    def send_end(self, tool_calls: list | None) -> None:
        """The request ended normally; `tool_calls` is None when no tools were offered."""
        raise NotImplementedError

    def send_error(self, message: str, finish: Finish) -> None:
        raise NotImplementedError

    def on_token(self, token: int) -> None:
        self._send(self.stream.push(token))

    def on_finish(self, finish: Finish, error: str | None) -> None:
        if finish in (Finish.ERROR, Finish.CANCELLED):
            self.send_error(error or finish.value, finish)
            return
        self._send(self.stream.flush())
        self.send_end(parse_response(self.text).tool_calls if self.tools_given else None)

    def _send(self, piece: str) -> None:
        if piece:
            self.text += piece
            self.send_text(piece)
