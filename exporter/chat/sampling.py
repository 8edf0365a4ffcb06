"""How the next token is chosen from logits: greedy, or sampled with temperature, top-k and top-p.

numpy only, so the Triton generation models run the same code as the CLI. A seeded
`numpy.random.Generator` makes sampled runs repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one request; temperature 0 means greedy."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def generator(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


def choose_token(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator | None = None) -> int:
    """The next token from logits [vocab]; `rng` is needed unless sampling is greedy."""
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    scaled = np.asarray(logits, np.float64) / sampling.temperature
    if sampling.top_k > 0:
        kth = np.sort(scaled)[-min(sampling.top_k, scaled.size)]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if sampling.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        before = np.cumsum(probs[order]) - probs[order]
        probs[order[before >= sampling.top_p]] = 0.0  # keep the token that crosses p
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))
