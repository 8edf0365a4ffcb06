"""How many positions the in-place KV cache of a `--kv-cache static` export holds.

Each layer's keys and values are preallocated at `max_context` slots per sequence
(graphs/lower_ort_static.py), so the slot count is a memory decision: by default
the model's `max_position_embeddings`, capped so that one sequence's cache fits
the budget (EXAONE 4.0 1.2B in fp32 takes 120 KiB a slot: its 65,536 positions
would be 7.5 GiB), rounded down to a multiple of 256. An explicit `--max-context`
above the model's positions or over the budget is refused, naming the option.
"""

from __future__ import annotations

from .config import Exaone4Config
from .contract import CacheLayout
from .errors import InputError

DEFAULT_BUDGET_GIB = 2.0
ROUNDING = 256
GIB = 1 << 30


def static_context(config: Exaone4Config, dtype: str, asked: int = 0, budget_gib: float = DEFAULT_BUDGET_GIB) -> int:
    """Slots per in-place buffer: `asked` when it fits, else the largest that does (asked 0)."""
    slot = CacheLayout.of(config, dtype).slot_bytes
    positions = config.max_position_embeddings
    if budget_gib <= 0:
        raise InputError("--kv-budget", f"must be a positive number of GiB, got {budget_gib:g}")
    fits = int(budget_gib * GIB // slot)
    if asked:
        if asked > positions:
            raise InputError("--max-context", f"{asked} exceeds the model's max_position_embeddings {positions}")
        if asked > fits:
            raise InputError("--max-context", f"{asked} slots take {asked * slot / GIB:.2f} GiB of KV cache per sequence, "
                             f"over the --kv-budget of {budget_gib:g} GiB (at most {fits} slots fit)")
        return asked
    context = min(positions, fits)
    if context >= ROUNDING and context < positions:
        context -= context % ROUNDING
    if context < 1:
        raise InputError("--kv-budget", f"{budget_gib:g} GiB holds no slot of {slot} bytes")
    return context


def describe(config: Exaone4Config, dtype: str, max_context: int) -> str:
    """One line for the CLI: slots, bytes a slot, GiB a sequence."""
    slot = CacheLayout.of(config, dtype).slot_bytes
    return (f"in-place KV cache: {max_context} slots x {slot / 1024:.1f} KiB = {max_context * slot / GIB:.2f} GiB per sequence "
            f"(model positions {config.max_position_embeddings})")
