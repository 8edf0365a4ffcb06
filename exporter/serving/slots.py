"""A fixed pool of sequence slots over an export with an in-place KV cache (`--kv-cache static`).

Each layer's keys and values live in one buffer [max_batch, kv_heads, max_context,
head_dim], allocated once (a sliding layer of a ring export, when its ring is
shorter than max_context: [max_batch, kv_heads, window + RING_CHUNK - 1, head_dim],
position p in slot p mod R, graphs/ring_cache.py); slot s is row s of every
buffer, and its tokens are positions [0, filled[s]). A ring that wraps is exact
for at most RING_CHUNK tokens a call, so such a pool refuses longer chunks
(`max_chunk`; the scheduler's prefill_chunk must not exceed it).

Calls bind a contiguous range of rows (a numpy view, no
copy) as both past and present (`Runner.infer_in_place`), and GroupQueryAttention
writes each row's new keys and values at that row's own length (per-row
`seqlens_k`), so rows of different lengths run in one call without padding the cache:

- `append(slot, tokens)`: a prompt chunk on top of what the slot holds (one row);
- `decode(slots, tokens)`: one token for each of several slots in one call.

A decode call covers rows lo..hi of the slots asked for; rows in between that
are not decoding (free, or mid-prefill) get a dummy token written at their own
length and are not advanced, so the next chunk of a prefilling row overwrites
it. Free slots are handed out lowest first to keep that range short.

`GrowingSlotPool` keeps the same slots for a runner whose model grows its cache
(TensorRT engines, full-cache exports): it gathers a left-padded past per call and
copies the new positions back, so the scheduler runs over any Runner.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    POSITION_IDS,
    RING_CHUNK,
    CacheLayout,
    present_for,
)
from ..session import Runner


def pool_bytes(layout: CacheLayout, max_batch: int, max_context: int) -> int:
    """Bytes of KV cache a pool allocates: every slot's positions on every layer (a ring's slots on a sliding layer)."""
    return max_batch * sum(pool_lengths(layout, max_context)) * layout.layer_bytes


def pool_lengths(layout: CacheLayout, max_context: int) -> list[int]:
    """Positions each layer keeps for one slot: max_context, or a sliding layer's ring when that is
    smaller (a ring of max_context slots never wraps, so a shorter context gains nothing from it)."""
    return [min(layout.ring_slots(layer) or max_context, max_context) for layer in range(layout.num_layers)]


def pool_max_chunk(layout: CacheLayout, max_context: int) -> int:
    """Tokens one call may add to a slot: RING_CHUNK once some ring wraps (it is exact for that many on
    top of its past, graphs/ring_cache.py), else the whole context."""
    return RING_CHUNK if min(pool_lengths(layout, max_context)) < max_context else max_context


class SlotPool:
    def __init__(self, runner: Runner, layout: CacheLayout, max_batch: int, max_context: int) -> None:
        self.runner = runner
        self.max_context = max_context
        self.caches = layout.zeros(max_batch, pool_lengths(layout, max_context))
        self.max_chunk = pool_max_chunk(layout, max_context)
        self.filled = np.zeros(max_batch, np.int64)  # tokens held by each slot
        self._free = list(range(max_batch))
        self.nbytes = pool_bytes(layout, max_batch, max_context)

    @property
    def capacity(self) -> int:
        return len(self.filled)

    @property
    def in_use(self) -> int:
        return self.capacity - len(self._free)

    def acquire(self) -> int | None:
        """The lowest free slot (now empty), or None when every slot is taken."""
        return heapq.heappop(self._free) if self._free else None

    def release(self, slot: int) -> None:
        """Give a slot back; what it held is forgotten (later writes start at position 0)."""
        if slot in self._free:
            raise ValueError(f"slot {slot} is already free")
        self.filled[slot] = 0
        heapq.heappush(self._free, slot)

    def append(self, slot: int, tokens: np.ndarray) -> np.ndarray:
        """Run `tokens` [n] after what `slot` holds; returns the logits [vocab] at the last one."""
        tokens = np.asarray(tokens, np.int64).reshape(1, -1)
        start, count = int(self.filled[slot]), tokens.shape[1]
        if start + count > self.max_context:
            raise ValueError(f"slot {slot} holds {start} tokens; {count} more exceed its {self.max_context} positions")
        if count > self.max_chunk:
            raise ValueError(f"{count} tokens in one call; this pool takes at most {self.max_chunk} (prefill_chunk)")
        feeds = {
            INPUT_IDS: tokens,
            ATTENTION_MASK: np.ones((1, start + count), np.int64),
            POSITION_IDS: (start + np.arange(count, dtype=np.int64))[None],
        }
        outputs = self.runner.infer_in_place(feeds, self._rows(slot, slot + 1))
        self.filled[slot] += count
        return outputs[LOGITS][0, -1]

    def decode(self, slots: list[int], tokens: list[int]) -> np.ndarray:
        """One token for each slot (in that order), in one call; returns logits [len(slots), vocab]."""
        index = np.asarray(slots, np.int64)
        lo, hi = int(index.min()), int(index.max()) + 1
        start = self.filled[lo:hi].copy()  # every row's length, decoding or not
        if start.max() >= self.max_context:
            raise ValueError(f"a slot holds {int(start.max())} tokens: no position left of {self.max_context}")
        ids = np.zeros((hi - lo, 1), np.int64)
        ids[index - lo, 0] = tokens
        total = start + 1
        feeds = {
            INPUT_IDS: ids,
            ATTENTION_MASK: (np.arange(int(total.max()))[None] < total[:, None]).astype(np.int64),
            POSITION_IDS: start[:, None],
        }
        outputs = self.runner.infer_in_place(feeds, self._rows(lo, hi))
        self.filled[index] += 1
        return outputs[LOGITS][index - lo, -1]

    def _rows(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Rows lo..hi of every buffer: views (contiguous, since rows are the first axis), not copies."""
        return {name: buffer[lo:hi] for name, buffer in self.caches.items()}


class GrowingSlotPool(SlotPool):
    """The same slots over a runner whose model grows its cache (present = past + new): TensorRT engines, full-cache exports.

    The slots' buffers are the same; each call gathers the slots' filled positions
    into a left-padded past (the IO contract's layout) and copies the new positions
    of the presents back. That costs a copy of the batch's cache per step, which the
    in-place pool avoids, but lets the scheduler drive any runner through `infer`.
    A TensorRT engine's profiles take a prompt only on an empty past: give such a
    pool a `prefill_chunk` as long as the longest prompt, and `prefill_stall` 0.
    """

    def append(self, slot: int, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, np.int64).reshape(1, -1)
        start, count = int(self.filled[slot]), tokens.shape[1]
        if start + count > self.max_context:
            raise ValueError(f"slot {slot} holds {start} tokens; {count} more exceed its {self.max_context} positions")
        feeds = {
            INPUT_IDS: tokens,
            ATTENTION_MASK: np.ones((1, start + count), np.int64),
            POSITION_IDS: (start + np.arange(count, dtype=np.int64))[None],
            **{name: buffer[slot : slot + 1, :, :start] for name, buffer in self.caches.items()},
        }
        outputs = self.runner.infer(feeds)
        for name, buffer in self.caches.items():
            buffer[slot, :, start : start + count] = outputs[present_for(name)][0, :, -count:]
        self.filled[slot] += count
        return outputs[LOGITS][0, -1]

    def decode(self, slots: list[int], tokens: list[int]) -> np.ndarray:
        index = np.asarray(slots, np.int64)
        filled = self.filled[index]
        if filled.max() >= self.max_context:
            raise ValueError(f"a slot holds {int(filled.max())} tokens: no position left of {self.max_context}")
        width = int(filled.max())
        feeds = {
            INPUT_IDS: np.asarray(tokens, np.int64).reshape(-1, 1),
            ATTENTION_MASK: (np.arange(width + 1)[None] >= (width - filled)[:, None]).astype(np.int64),  # left-padded
            POSITION_IDS: filled[:, None],
        }
        for name, buffer in self.caches.items():
            past = np.zeros((len(index), *buffer.shape[1:2], width, buffer.shape[3]), buffer.dtype)
            for row, (slot, n) in enumerate(zip(index, filled)):
                past[row, :, width - n :] = buffer[slot, :, :n]
            feeds[name] = past
        outputs = self.runner.infer(feeds)
        for name, buffer in self.caches.items():
            buffer[index, :, filled] = outputs[present_for(name)][:, :, -1]
        self.filled[index] += 1
        return outputs[LOGITS][:, -1]
