"""Token generation over the reference model's explicit KV cache.

`generate_tokens` is a plain loop: one prefill call over the prompt, then one
decode call per new token, each feeding back the present keys/values. Sampling
is greedy unless a temperature is given; top-k / top-p filter the distribution
first. A seeded `torch.Generator` makes sampled runs repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .model import Exaone4ForCausalLM


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
        sorted_logits, order = logits.sort(descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= sampling.top_p  # keep the token that crosses p
        logits[order[drop]] = float("-inf")
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


@torch.no_grad()
def generate_tokens(
    model: Exaone4ForCausalLM,
    prompt_ids: list[int],
    max_new_tokens: int,
    stop_ids: set[int] = frozenset(),
    sampling: Sampling = Sampling(),
) -> Iterator[int]:
    """Yield new token ids one at a time; stops after a stop id (yielded) or max_new_tokens."""
    generator = torch.Generator().manual_seed(sampling.seed)
    ids = torch.tensor([prompt_ids], dtype=torch.long)  # [1, S]
    mask = torch.ones_like(ids)
    positions = torch.arange(ids.shape[1])[None]
    past_keys, past_values = model.empty_cache(1)
    for _ in range(max_new_tokens):
        logits, past_keys, past_values = model(ids, mask, positions, past_keys, past_values)
        token = choose_token(logits[0, -1], sampling, generator)
        yield token
        if token in stop_ids:
            return
        ids = torch.tensor([[token]])
        positions = positions[:, -1:] + 1
        mask = torch.cat((mask, torch.ones(1, 1, dtype=torch.long)), dim=1)
