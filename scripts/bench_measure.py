"""Timing pieces of scripts/bench.py: memory bandwidth, and prefill/decode of each kind of backend.

Every measurement runs one warm-up repetition, then `reps` timed ones, and
reports the median with min and max. Prefill is timed over a whole prompt of
the context length; decode is the mean time per token of `decode` greedy
tokens after it, one value per repetition.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from exaone4.exporter.runners import KVCacheSession


def memory_bandwidth(bytes_: int = 1 << 30, reps: int = 5) -> float:
    """Bytes per second of a large copy, read and write both counted: what a decode step can stream."""
    source = np.ones(bytes_ // 8, dtype=np.float64)
    target = np.empty_like(source)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - start)
    return 2 * source.nbytes / statistics.median(times)


def summary(prompt_tokens: int, prefill: list[float], per_token: list[float]) -> dict:
    """Medians and [min, median, max] of the timed repetitions."""
    return {
        "prefill_tokens_per_s": prompt_tokens / statistics.median(prefill),
        "prefill_s": [min(prefill), statistics.median(prefill), max(prefill)],
        "decode_ms_per_token": 1000 * statistics.median(per_token),
        "decode_ms": [1000 * min(per_token), 1000 * statistics.median(per_token), 1000 * max(per_token)],
    }


def measure_session(runner, layout, ids: np.ndarray, decode: int, reps: int) -> dict:
    """A runner driven through `KVCacheSession`: prefill, then greedy decode feeding the cache back."""
    prefill, per_token = [], []
    for rep in range(reps + 1):  # the first repetition warms up
        session = KVCacheSession(runner, layout)
        start = time.perf_counter()
        logits = session.prefill(ids)
        middle = time.perf_counter()
        for _ in range(decode):
            logits = session.decode(logits[:, -1].argmax(-1))
        end = time.perf_counter()
        if rep:
            prefill.append(middle - start)
            per_token.append((end - middle) / decode)
    return summary(ids.size, prefill, per_token)


@torch.no_grad()
def measure_generate(model, ids: np.ndarray, decode: int, reps: int) -> dict:
    """transformers' own `generate` (greedy, its DynamicCache, last-position logits in prefill).

    Prefill is a generate of one token; decode is (generate of 1 + decode tokens minus
    the prefill of the same repetition) / decode.
    """
    inputs = torch.from_numpy(ids)
    mask = torch.ones_like(inputs)

    def generate(tokens: int) -> float:
        start = time.perf_counter()
        model.generate(inputs, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return time.perf_counter() - start

    prefill, per_token = [], []
    for rep in range(reps + 1):
        first = generate(1)
        whole = generate(decode + 1)
        if rep:
            prefill.append(first)
            per_token.append(max(whole - first, 0.0) / decode)
    return summary(ids.size, prefill, per_token)


def measure_naive(session, ids: np.ndarray, decode: int, reps: int) -> dict:
    """The no-cache export: each new token runs the whole sequence again."""
    prefill, per_token = [], []
    for rep in range(reps + 1):
        sequence = ids
        start = time.perf_counter()
        logits = session.run(None, {"input_ids": sequence})[0]
        middle = time.perf_counter()
        for _ in range(decode):
            sequence = np.concatenate((sequence, logits[:, -1:].argmax(-1)), axis=1)
            logits = session.run(None, {"input_ids": sequence})[0]
        end = time.perf_counter()
        if rep:
            prefill.append(middle - start)
            per_token.append((end - middle) / decode)
    return summary(ids.size, prefill, per_token)


def load_transformers(checkpoint_dir: Path):
    """transformers' Exaone4ForCausalLM in fp32 with eager attention, as a user would load it."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(
            checkpoint_dir, dtype=torch.float32, attn_implementation="eager"
        ).eval()
