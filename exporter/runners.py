"""One interface for every backend: `Runner.infer(feeds) -> outputs`, used as a context manager.

Feeds and outputs are numpy arrays named by the IO contract (ARCHITECTURE.md):
input_ids, attention_mask, position_ids, past_key_values.{i}.key/.value in;
logits, present.{i}.key/.value out. `KVCacheSession` drives any runner through
prefill and decode steps, keeping the cache and the left-padded attention mask.

    with OrtRunner(export_dir) as runner:
        session = KVCacheSession(runner, layout)
        logits = session.prefill(ids, mask)      # [B, S, vocab]
        logits = session.decode(next_tokens)     # [B, 1, vocab]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import Exaone4Config
from .errors import InputError


@dataclass(frozen=True)
class CacheLayout:
    """What a KV cache looks like for one model: [B, kv_heads, length, head_dim] per layer."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: np.dtype

    @classmethod
    def of(cls, config: Exaone4Config, dtype=np.float32) -> CacheLayout:
        return cls(config.num_layers, config.num_kv_heads, config.head_dim, np.dtype(dtype))

    def empty(self, batch: int) -> dict[str, np.ndarray]:
        shape = (batch, self.num_kv_heads, 0, self.head_dim)
        return {
            f"past_key_values.{i}.{kind}": np.zeros(shape, self.dtype)
            for i in range(self.num_layers)
            for kind in ("key", "value")
        }


class Runner:
    """Base class: subclasses implement `infer`; `open`/`close` are optional."""

    name = "runner"

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


class TorchRunner(Runner):
    """The reference PyTorch model."""

    name = "torch"

    def __init__(self, model) -> None:
        self.model = model

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        layers = self.model.config.num_layers
        dtype = self.model.lm_head.weight.dtype
        past = lambda i, kind: torch.from_numpy(np.ascontiguousarray(feeds[f"past_key_values.{i}.{kind}"])).to(dtype)  # noqa: E731
        logits, keys, values = self.model(
            torch.from_numpy(feeds["input_ids"]),
            torch.from_numpy(feeds["attention_mask"]),
            torch.from_numpy(feeds["position_ids"]),
            [past(i, "key") for i in range(layers)],
            [past(i, "value") for i in range(layers)],
        )
        outputs = {"logits": logits.float().numpy()}
        for i in range(layers):
            outputs[f"present.{i}.key"] = keys[i].numpy()
            outputs[f"present.{i}.value"] = values[i].numpy()
        return outputs


class OrtRunner(Runner):
    """An ONNX export run by onnxruntime on the CPU (or the given providers)."""

    name = "ort"

    def __init__(self, model_path: Path, threads: int = 0, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        path = Path(model_path)
        self.path = path / "model.onnx" if path.is_dir() else path
        if not self.path.is_file():
            raise InputError(str(self.path), "ONNX model not found")
        self.threads = threads
        self.providers = providers
        self.session = None

    def open(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(str(self.path), options, providers=list(self.providers))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def close(self) -> None:
        self.session = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.session is None:
            self.open()
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


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
        feeds = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions, **self.past}
        outputs = self.runner.infer(feeds)
        self.mask = mask
        self.past = {
            f"past_key_values.{i}.{kind}": outputs[f"present.{i}.{kind}"]
            for i in range(self.layout.num_layers)
            for kind in ("key", "value")
        }
        self.last_outputs = outputs
        return outputs["logits"]
