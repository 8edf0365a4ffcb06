"""Helpers shared by the hardening tests: hand-made safetensors files, a hang guard, hypothesis settings."""

from __future__ import annotations

import contextlib
import json
import signal
import struct
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings


def fuzz_settings(max_examples: int, **overrides) -> settings:
    """Bounded and reproducible for CI: derandomized, no deadline (2 shared cores are noisy),
    no example database, and the counting fixture allowed (it is not reset between examples)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        **overrides,
    )


GENERATE_ONLY = (Phase.explicit, Phase.generate)  # no shrinking: for the slow export property


def safetensors_bytes(header, body: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file written by hand: 8-byte little-endian header length, JSON header, body.

    `header` may be anything JSON can hold (or raw bytes), so hostile headers can be made;
    `length` overrides the header length field.
    """
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def write_safetensors(path: Path, header, body: bytes = b"", length: int | None = None) -> Path:
    path.write_bytes(safetensors_bytes(header, body, length))
    return path


class Hang(Exception):
    """Raised by `no_hang` when the guarded block runs past its time."""


@contextlib.contextmanager
def no_hang(seconds: float):
    """Fail (raise Hang) when the block runs longer than `seconds` (SIGALRM; main thread only)."""

    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
