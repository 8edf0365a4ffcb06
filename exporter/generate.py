"""Token generation over any runner's explicit KV cache.

`generate_tokens` is a plain loop: one prefill call over the prompt, then one
decode call per new token, each feeding back the present keys/values through a
`KVCacheSession`. Sampling is greedy unless a temperature is given; top-k /
top-p filter the distribution first. A seeded `torch.Generator` makes sampled
runs repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .runners import KVCacheSession


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen; temperature 0 means greedy."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def choose_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """Pick the next token from logits [vocab]."""
    if sampling.temperature <= 0:
        return int(logits.argmax())
    logits = logits.float() / sampling.temperature
    if sampling.top_k > 0:
        kth = torch.topk(logits, min(sampling.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        probs = logits.softmax(-1)
        sorted_probs, order = probs.sort(descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p  # keep the token that crosses p
        logits[order[drop]] = float("-inf")
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


def generate_tokens(
    session: KVCacheSession,
    prompt_ids: list[int],
    max_new_tokens: int,
    stop_ids: set[int] = frozenset(),
    sampling: Sampling = Sampling(),
) -> Iterator[int]:
    """Yield new token ids one at a time; stops after a stop id (yielded) or max_new_tokens."""
    generator = torch.Generator().manual_seed(sampling.seed)
    logits = session.prefill(np.array([prompt_ids], dtype=np.int64))
    for produced in range(max_new_tokens):
        token = choose_token(torch.from_numpy(np.asarray(logits[0, -1], np.float32)), sampling, generator)
        yield token
        if token in stop_ids or produced == max_new_tokens - 1:
            return
        logits = session.decode(np.array([token]))
