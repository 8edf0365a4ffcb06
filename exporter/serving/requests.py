"""What the scheduler is asked to do and what it tells each requester: typed, Triton-free.

A `GenerationRequest` is token ids plus limits and sampling; a `Client` is the
requester's side (the Triton glue wraps a response sender in one): it receives
each token and the end, and says whether the request was cancelled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..chat.sampling import Sampling


class Finish(enum.Enum):
    """Why a request left its slot."""

    STOP = "stop"  # a stop token (not sent)
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"  # the client went away
    ERROR = "error"  # this request failed; the others carry on
    REJECTED = "rejected"  # refused at submit: the queue was full


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate: prompt token ids, at most `max_tokens` new ones, how to pick them."""

    prompt: tuple[int, ...]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop_ids: frozenset[int] = frozenset()


class Client:
    """The requester's side of one request. The scheduler calls these from its own thread.

    `on_token` gets every generated token but a stop token; `on_finish` comes exactly
    once, last (with a message when `finish` is ERROR). An exception raised by either
    fails this request alone.
    """

    def on_token(self, token: int) -> None:
        raise NotImplementedError

    def on_finish(self, finish: Finish, error: str | None) -> None:
        raise NotImplementedError

    def cancelled(self) -> bool:
        """Polled at every step boundary; True frees the request's slot."""
        return False


class QueueFull(Exception):
    """The bounded queue of waiting requests is full: this request is refused at once."""
