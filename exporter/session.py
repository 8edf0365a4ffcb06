"""The Runner interface and the KV-cache session that drives any runner, torch-free.

`Runner.infer(feeds) -> outputs` is the one interface of every backend (the
reference model, transformers, onnxruntime, TensorRT, and the Triton decoder
reached over BLS); `KVCacheSession` drives one through prefill and decode steps,
keeping the cache and the left-padded attention mask. numpy only: this module
ships into Triton model repositories with the chat code (exporter/triton.py).

    with OrtRunner(export_dir) as runner:
        session = KVCacheSession(runner, layout)
        logits = session.prefill(ids, mask)      # [B, S, vocab]
        logits = session.decode(next_tokens)     # [B, 1, vocab]
"""

from __future__ import annotations

import numpy as np

from .contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    KV_KINDS,
    LOGITS,
    POSITION_IDS,
    RING_CHUNK,
    CacheLayout,
    past_name,
    past_names,
    present_for,
    present_name,
)


class Runner:
    """Base class: subclasses implement `infer`; `open`/`close` are optional.

    A runner built with `hidden_states=True` also returns `hidden_states.{i}`
    (each decoder layer's output) when `provides_hidden_states` is set.
    """

    name = "runner"
    provides_hidden_states = False

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def infer_in_place(self, feeds: dict[str, np.ndarray], caches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with `caches` ({past name: buffer}) as both past and present; returns the other outputs.

        For exports with an in-place cache (`--kv-cache static`). This default goes
        through `infer` and copies each present back into its buffer; runners that can
        bind one buffer to both (OrtRunner) override it and copy nothing.
        """
        outputs = self.infer({**feeds, **caches})
        for name, buffer in caches.items():
            np.copyto(buffer, outputs.pop(present_for(name)))
        return outputs

    def new_session(self, layout: CacheLayout):
        """The session that drives this runner's cache (a growing one, unless the runner says otherwise)."""
        return KVCacheSession(self, layout)

    def __enter__(self) -> Runner:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class KVCacheSession:
    """Prefill then decode through a runner, keeping the KV cache and the attention mask."""

    def __init__(self, runner: Runner, layout: CacheLayout) -> None:
        self.runner = runner
        self.layout = layout
        self.past: dict[str, np.ndarray] = {}
        self.mask: np.ndarray | None = None
        self.last_outputs: dict[str, np.ndarray] = {}

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        """Run the prompt [B, S] (left-padded rows marked by attention_mask); returns logits."""
        input_ids = np.asarray(input_ids, np.int64)
        mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask, np.int64)
        self.past = self.layout.empty(input_ids.shape[0])
        self.mask = np.zeros((input_ids.shape[0], 0), np.int64)
        return self.step(input_ids, mask)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """One new token per row ([B] or [B, 1]); returns logits [B, 1, vocab]."""
        tokens = np.asarray(tokens, np.int64).reshape(-1, 1)
        return self.step(tokens, np.ones_like(tokens))

    def step(self, input_ids: np.ndarray, new_mask: np.ndarray) -> np.ndarray:
        """Append a chunk [B, S] whose own mask is `new_mask` [B, S]."""
        mask = np.concatenate((self.mask, new_mask), axis=1)
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)[:, -input_ids.shape[1] :]
        feeds = {INPUT_IDS: input_ids, ATTENTION_MASK: mask, POSITION_IDS: positions, **self.past}
        outputs = self.runner.infer(feeds)
        self.mask = mask
        self.past = {name: outputs[present_for(name)] for name in past_names(self.layout.num_layers)}
        self.last_outputs = outputs
        return outputs[LOGITS]


class StaticKVCacheSession:
    """Prefill then decode an export with an in-place cache: one [B, KV, max_context, D] buffer per layer and kind.

    Row b's tokens sit right-aligned in slots [0, n_b) of every buffer; the model
    writes each step's keys/values in place at n_b (graphs/lower_ort_static.py), so
    nothing but the new positions moves. The interface is KVCacheSession's, in the
    IO contract's layout: `prefill` takes left-padded rows, logits come back aligned
    with the input, and `mask` / `last_outputs` show the cache as a growing one would
    (left-padded, [B, KV, T, D]) for the parity harness, built only when read.
    """

    def __init__(self, runner: Runner, layout: CacheLayout, max_context: int) -> None:
        self.runner = runner
        self.layout = layout
        self.max_context = max_context
        self.caches: dict[str, np.ndarray] = {}
        self.filled = np.zeros(0, np.int64)  # n_b: tokens in row b's buffers
        self.width = 0  # T of the equivalent growing cache
        self._outputs: dict[str, np.ndarray] = {}

    @property
    def length(self) -> int:
        return self.width

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        """Run the prompt [B, S] (left-padded rows marked by attention_mask); returns logits as KVCacheSession does."""
        input_ids = np.asarray(input_ids, np.int64)
        batch, seq = input_ids.shape
        mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask, np.int64)
        counts = mask.sum(axis=1)
        self.caches = self._allocate(batch, int(counts.max(initial=0)))
        self.filled, self.width = np.zeros(batch, np.int64), 0
        rows = np.zeros_like(input_ids)  # right-aligned: row b's tokens first, pad after
        for b in range(batch):
            rows[b, : counts[b]] = input_ids[b][mask[b].astype(bool)]
        return self._run(rows[:, : counts.max()], counts, seq)

    def _allocate(self, batch: int, prompt: int) -> dict[str, np.ndarray]:
        """Zeroed buffers [B, KV, slots, D] per layer: max_context slots, or a ring's (sized for this prompt)."""
        layout = self.layout
        return layout.zeros(batch, [layout.ring_slots(layer, prompt) or self.max_context for layer in range(layout.num_layers)])

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """One new token per row ([B] or [B, 1]); returns logits [B, 1, vocab]."""
        tokens = np.asarray(tokens, np.int64).reshape(-1, 1)
        return self._run(tokens, np.ones(len(tokens), np.int64), 1)

    def _run(self, rows: np.ndarray, counts: np.ndarray, caller_width: int) -> np.ndarray:
        """rows [B, S] right-aligned, counts[b] of them real; appends them after each row's filled slots."""
        seq = rows.shape[1]
        total = self.filled + counts
        if total.max() > self.max_context:
            raise ValueError(f"the in-place cache holds {self.max_context} tokens; this step needs {int(total.max())}")
        if self.filled.any() and seq > RING_CHUNK and self.layout.rings:
            raise ValueError(f"a ring cache takes at most {RING_CHUNK} tokens a call on top of its past; this call has {seq}")
        width = int(total.max())
        mask = (np.arange(width)[None] < total[:, None]).astype(np.int64)  # [B, T]: each row's filled slots
        positions = np.minimum(self.filled[:, None] + np.arange(seq)[None], self.max_context - 1)
        outputs = self.runner.infer_in_place({INPUT_IDS: rows, ATTENTION_MASK: mask, POSITION_IDS: positions}, self.caches)
        self.filled, self.width = total, self.width + caller_width
        self._outputs = {name: self._aligned(value, counts, caller_width) for name, value in outputs.items()}
        return self._outputs[LOGITS]

    @staticmethod
    def _aligned(value: np.ndarray, counts: np.ndarray, caller_width: int) -> np.ndarray:
        """[B, S, ...] right-aligned per row -> [B, caller_width, ...] left-padded, as the caller laid it out.

        Values with one position per row (decode, `--logits last`) already are each row's last.
        """
        seq = int(counts.max(initial=0))
        aligned = caller_width == seq and bool((counts == seq).all())
        if value.ndim < 2 or value.shape[1] != seq or aligned:
            return value
        out = np.zeros((value.shape[0], caller_width, *value.shape[2:]), value.dtype)
        for b, n in enumerate(counts):
            out[b, caller_width - n :] = value[b, :n]
        return out

    @property
    def mask(self) -> np.ndarray:
        """The left-padded attention mask a growing cache would hold now [B, T]."""
        return (np.arange(self.width)[None] >= (self.width - self.filled)[:, None]).astype(np.int64)

    @property
    def last_outputs(self) -> dict[str, np.ndarray]:
        """The last call's outputs plus each layer's cache as a growing one would hold it (a copy).

        A ring yields the positions it can still be read at, the last window - 1, as
        a bounded window cache does (graphs/window_cache.py).
        """
        presents = {}
        for layer in range(self.layout.num_layers):
            window = self.layout.rings[layer] if self.layout.rings else 0
            width = min(self.width, window - 1) if window else self.width
            for kind in KV_KINDS:
                buffer = self.caches[past_name(layer, kind)]
                view = np.zeros((*buffer.shape[:2], width, buffer.shape[3]), buffer.dtype)
                for b, n in enumerate(self.filled):
                    kept = min(int(n), width)
                    slots = np.arange(n - kept, n) % buffer.shape[2]  # positions n - kept .. n - 1, wrapped in a ring
                    view[b, :, width - kept :] = buffer[b][:, slots]
                presents[present_name(layer, kind)] = view
        return {**self._outputs, **presents}
