"""Timing pieces of scripts/bench.py: memory bandwidth, and prefill/decode of each kind of backend.

Each backend gives a `Repetition`: one timed run of a prefill over a whole prompt
of the context length, then `decode` greedy tokens (their mean time per token).
`interleaved` warms every backend up, runs the repetitions round-robin, and
reports medians with min and max.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from exaone4.exporter.runners import KVCacheSession


def memory_bandwidth(bytes_: int = 1 << 30, reps: int = 5) -> dict[str, float]:
    """Bytes per second the machine streams from memory: the best of `reps` runs (the physical limit
    is the fastest rate observed, not a typical one).

    "read" is the faster of a reduction and a matrix-vector product over 1 GiB on every
    thread: a decode step streams its weights exactly so, and the roofline uses it.
    "copy" (read + write counted) is kept for reference.
    """
    matrix = torch.ones(8192, bytes_ // 4 // 8192, dtype=torch.float32)
    vector = torch.ones(matrix.shape[1], dtype=torch.float32)
    target = torch.empty_like(matrix)

    def timed(operation) -> float:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            operation()
            times.append(time.perf_counter() - start)
        return min(times)

    read = min(timed(matrix.sum), timed(lambda: matrix.mv(vector)))
    return {"read": matrix.nbytes / read, "copy": 2 * matrix.nbytes / timed(lambda: target.copy_(matrix))}


def summary(prompt_tokens: int, prefill: list[float], per_token: list[float]) -> dict:
    """Medians and [min, median, max] of the timed repetitions."""
    return {
        "prefill_tokens_per_s": prompt_tokens / statistics.median(prefill),
        "prefill_s": [min(prefill), statistics.median(prefill), max(prefill)],
        "decode_ms_per_token": 1000 * statistics.median(per_token),
        "decode_ms": [1000 * min(per_token), 1000 * statistics.median(per_token), 1000 * max(per_token)],
    }


Repetition = Callable[[], tuple[float, float]]  # one timed run: (prefill seconds, decode seconds per token)


def interleaved(repetitions: dict[str, Repetition], reps: int, prompt_tokens: int) -> dict[str, dict]:
    """Warm every backend up once, then run the timed repetitions round-robin.

    Interleaving spreads the machine's drift (other tenants, clocks) over every
    backend alike, so the ratios between them hold even when absolute times wander.
    """
    for repetition in repetitions.values():
        repetition()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in repetitions}
    for _ in range(reps):
        for name, repetition in repetitions.items():
            times[name].append(repetition())
    return {name: summary(prompt_tokens, [t[0] for t in runs], [t[1] for t in runs]) for name, runs in times.items()}


def session_repetition(runner, layout, ids: np.ndarray, decode: int) -> Repetition:
    """A runner driven through `KVCacheSession`: prefill, then greedy decode feeding the cache back."""

    def run() -> tuple[float, float]:
        session = KVCacheSession(runner, layout)
        start = time.perf_counter()
        logits = session.prefill(ids)
        middle = time.perf_counter()
        for _ in range(decode):
            logits = session.decode(logits[:, -1].argmax(-1))
        return middle - start, (time.perf_counter() - middle) / decode

    return run


def generate_repetition(model, ids: np.ndarray, decode: int) -> Repetition:
    """transformers' own `generate` (greedy, its DynamicCache, last-position logits in prefill).

    A stopping criterion records the time each token is produced: prefill is the time to the
    first token, decode the mean time between the following ones, all inside one generate call.
    """
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Clock(StoppingCriteria):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def __call__(self, input_ids, scores, **kwargs):
            self.stamps.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    inputs = torch.from_numpy(ids)

    @torch.no_grad()
    def run() -> tuple[float, float]:
        clock = Clock()
        start = time.perf_counter()
        model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=decode + 1, min_new_tokens=decode + 1,
                       do_sample=False, stopping_criteria=StoppingCriteriaList([clock]))
        return clock.stamps[0] - start, (clock.stamps[-1] - clock.stamps[0]) / decode

    return run


def naive_repetition(session, ids: np.ndarray, decode: int) -> Repetition:
    """The no-cache export: each new token runs the whole sequence again (so a few tokens say enough)."""

    def run() -> tuple[float, float]:
        sequence = ids
        start = time.perf_counter()
        logits = session.run(None, {"input_ids": sequence})[0]
        middle = time.perf_counter()
        for _ in range(decode):
            sequence = np.concatenate((sequence, logits[:, -1:].argmax(-1)), axis=1)
            logits = session.run(None, {"input_ids": sequence})[0]
        return middle - start, (time.perf_counter() - middle) / decode

    return run


def load_transformers(checkpoint_dir: Path):
    """transformers' Exaone4ForCausalLM in fp32 with eager attention, as a user would load it."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(
            checkpoint_dir, dtype=torch.float32, attn_implementation="eager"
        ).eval()
