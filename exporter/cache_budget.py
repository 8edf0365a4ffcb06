"""How many positions the in-place KV cache of a `--kv-cache static` export holds.

Each global layer's keys and values are preallocated at `max_context` slots per
sequence (graphs/lower_ort_static.py); each sliding layer keeps a ring of its
window plus a chunk (graphs/ring_cache.py), whatever the context. So the slot
count is a memory decision: by default the model's `max_position_embeddings`,
capped so that one sequence's cache (rings included) fits the budget (EXAONE 4.0
1.2B in fp32 takes 120 KiB a slot: its 65,536 positions would be 7.5 GiB),
rounded down to a multiple of 256. An explicit `--max-context` above the model's
positions or over the budget is refused, naming the option.
"""

from __future__ import annotations

from .config import Exaone4Config
from .contract import CacheLayout
from .errors import InputError

DEFAULT_BUDGET_GIB = 2.0
ROUNDING = 256
GIB = 1 << 30


def static_context(config: Exaone4Config, dtype: str, asked: int = 0, budget_gib: float = DEFAULT_BUDGET_GIB) -> int:
    """Slots per global in-place buffer: `asked` when it fits, else the largest that does (asked 0)."""
    layout = CacheLayout.of(config, dtype, rings=True)
    slot, rings = layout.slot_bytes, layout.ring_bytes()
    positions = config.max_position_embeddings
    if budget_gib <= 0:
        raise InputError("--kv-budget", f"must be a positive number of GiB, got {budget_gib:g}")
    fits = int((budget_gib * GIB - rings) // slot) if slot else positions
    if asked:
        if asked > positions:
            raise InputError("--max-context", f"{asked} exceeds the model's max_position_embeddings {positions}")
        if asked > fits:
            raise InputError("--max-context", f"{asked} slots take {(asked * slot + rings) / GIB:.2f} GiB of KV cache per sequence, "
                             f"over the --kv-budget of {budget_gib:g} GiB (at most {max(fits, 0)} slots fit)")
        return asked
    context = min(positions, fits)
    if context >= ROUNDING and context < positions:
        context -= context % ROUNDING
    if context < 1:
        raise InputError("--kv-budget", f"{budget_gib:g} GiB holds no slot of {slot} bytes")
    return context


def describe(config: Exaone4Config, dtype: str, max_context: int) -> str:
    """One line for the CLI: slots, bytes a slot, the rings, GiB a sequence."""
    layout = CacheLayout.of(config, dtype, rings=True)
    slot, rings = layout.slot_bytes, layout.ring_bytes()
    ring_note = f" + sliding-layer rings {rings / GIB:.2f} GiB" if rings else ""
    return (f"in-place KV cache: {max_context} slots x {slot / 1024:.1f} KiB{ring_note} = "
            f"{(max_context * slot + rings) / GIB:.2f} GiB per sequence (model positions {config.max_position_embeddings})")
