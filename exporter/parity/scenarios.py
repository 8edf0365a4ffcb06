"""The decoder scenarios every backend runs, with seeded, recorded feeds.

Each scenario is a left-padded batch of prompts, a number of teacher-forced
decode steps (the tokens are the reference's greedy choices, so every backend
sees identical feeds), and a number of free-running greedy tokens whose
agreement with the reference is measured. Prompt lengths derive from the model's
sliding window and context so the interesting boundaries are always crossed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Exaone4Config

FIRST_ORDINARY_TOKEN = 16  # ids below are special tokens in EXAONE-style vocabularies


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    prompts: tuple[tuple[int, ...], ...]  # one token list per row, unpadded
    decode_steps: int
    greedy_tokens: int

    @property
    def batch(self) -> int:
        return len(self.prompts)

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded input_ids and attention_mask [B, max prompt length]."""
        width = max(len(p) for p in self.prompts)
        ids = np.zeros((self.batch, width), np.int64)
        mask = np.zeros((self.batch, width), np.int64)
        for row, prompt in enumerate(self.prompts):
            ids[row, width - len(prompt) :] = prompt
            mask[row, width - len(prompt) :] = 1
        return ids, mask


def _tokens(rng: np.random.Generator, vocab: int, length: int) -> tuple[int, ...]:
    low = min(FIRST_ORDINARY_TOKEN, vocab - 1)
    return tuple(int(t) for t in rng.integers(low, vocab, length))


def build_scenarios(config: Exaone4Config, seed: int = 0, max_context: int = 4096) -> list[Scenario]:
    """prefill, prefill + decode past the window, left-padded batch, long context."""
    rng = np.random.default_rng(seed)
    vocab = config.vocab_size
    window = config.sliding_window or 16
    context = min(config.max_position_embeddings, max_context)
    prompt = min(2 * window + 5, context // 2)
    decode = min(window + 8, context - prompt - 1)
    long_decode = 4
    return [
        Scenario("prefill", f"one prompt of {prompt} tokens (window {config.sliding_window})",
                 (_tokens(rng, vocab, prompt),), 0, 0),
        Scenario("prefill_decode", f"prefill {prompt} tokens, then {decode} decode steps past the window, "
                 "then free-running greedy tokens", (_tokens(rng, vocab, prompt),), decode, 8),
        Scenario("left_padded_batch", "a batch of 2 prompts of different lengths (left padding), then 4 decode steps",
                 (_tokens(rng, vocab, prompt), _tokens(rng, vocab, max(prompt // 2, 2))), 4, 0),
        Scenario("long_context", f"prefill {context - long_decode - 1} tokens, then decode to position {context - 1} "
                 f"(context {context} of {config.max_position_embeddings})",
                 (_tokens(rng, vocab, context - long_decode - 1),), long_decode, 0),
    ]
