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

from .contract import ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS, CacheLayout, past_names, present_for


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
