"""Token generation over any runner's explicit KV cache, torch-free.

`generate_tokens` is a plain loop: one prefill call over the prompt, then one
decode call per new token, each feeding back the present keys/values through a
`KVCacheSession`. The token is chosen by `chat.sampling` (greedy unless a
temperature is given). The CLI and the Triton generation models both run this
loop: the CLI over an in-process runner, Triton over the decoder model via BLS.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .chat.sampling import Sampling, choose_token
from .session import KVCacheSession

__all__ = ["Sampling", "generate_tokens"]


def generate_tokens(
    session: KVCacheSession,
    prompt_ids: list[int],
    max_new_tokens: int,
    stop_ids: set[int] | frozenset[int] = frozenset(),
    sampling: Sampling | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time; stops after a stop id (yielded) or max_new_tokens. Greedy by default."""
    sampling = sampling or Sampling()
    rng = sampling.generator()
    logits = session.prefill(np.array([prompt_ids], dtype=np.int64))
    for produced in range(max_new_tokens):
        token = choose_token(np.asarray(logits[0, -1], np.float32), sampling, rng)
        yield token
        if token in stop_ids or produced == max_new_tokens - 1:
            return
        logits = session.decode(np.array([token]))
