"""TensorRT optimization profiles for the IO contract's dynamic dims.

Two profiles, chosen per call by the runner from the past length:
    0 prefill: sequence 1..max_prefill, past 0, batch 1..max_batch
    1 decode:  sequence 1, past 0..max_context-1, batch 1..max_batch
"""

from __future__ import annotations

from ..contract import ATTENTION_MASK, INPUT_IDS, POSITION_IDS

PREFILL, DECODE = 0, 1


def profiles(
    inputs: list[tuple[str, tuple[int, ...]]],
    max_batch: int,
    max_prefill: int,
    max_context: int,
    past_caps: dict[str, int] | None = None,
) -> list[dict]:
    """min/opt/max shapes per input for the prefill and decode profiles.

    `past_caps` bounds the past length of named inputs: a window KV cache's
    sliding layers never hold more than W - 1 slots.
    """
    past_caps = past_caps or {}

    def shapes(seq: tuple[int, int, int], past: tuple[int, int, int]) -> dict:
        batch = (1, 1, max_batch)
        result = {}
        for name, shape in inputs:
            if name in (INPUT_IDS, POSITION_IDS):
                result[name] = [[b, s] for b, s in zip(batch, seq)]
            elif name == ATTENTION_MASK:
                result[name] = [[b, s + p] for b, s, p in zip(batch, seq, past)]
            else:  # past_key_values.{i}.key/value [B, KV, P, D]
                cap = past_caps.get(name, max_context)
                result[name] = [[b, shape[1], min(p, cap), shape[3]] for b, p in zip(batch, past)]
        return result

    return [
        {"name": "prefill", "shapes": shapes((1, min(128, max_prefill), max_prefill), (0, 0, 0))},
        {"name": "decode", "shapes": shapes((1, 1, 1), (0, min(1024, max_context - 1), max_context - 1))},
    ]
