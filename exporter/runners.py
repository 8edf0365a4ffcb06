"""One interface for every backend: `Runner.infer(feeds) -> outputs`, used as a context manager.

Feeds and outputs are numpy arrays named by the IO contract (docs/architecture.md#io-contract):
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


class TorchRunner(Runner):
    """The reference PyTorch model."""

    name = "torch"
    provides_hidden_states = True

    def __init__(self, model, hidden_states: bool = False) -> None:
        self.model = model
        self.hidden_states = hidden_states

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        layers = self.model.config.num_layers
        dtype = self.model.lm_head.weight.dtype
        past = lambda i, kind: torch.from_numpy(np.ascontiguousarray(feeds[f"past_key_values.{i}.{kind}"])).to(dtype)  # noqa: E731
        logits, keys, values, hidden = self.model(
            torch.from_numpy(feeds["input_ids"]),
            torch.from_numpy(feeds["attention_mask"]),
            torch.from_numpy(feeds["position_ids"]),
            [past(i, "key") for i in range(layers)],
            [past(i, "value") for i in range(layers)],
            output_hidden_states=True,
        )
        outputs = {"logits": logits.float().numpy()}
        if self.hidden_states:
            outputs.update({f"hidden_states.{i}": h.float().numpy() for i, h in enumerate(hidden)})
        for i in range(layers):
            outputs[f"present.{i}.key"] = keys[i].numpy()
            outputs[f"present.{i}.value"] = values[i].numpy()
        return outputs


class OrtRunner(Runner):
    """An ONNX export run by onnxruntime on the CPU (or the given providers)."""

    name = "ort"
    provides_hidden_states = True

    def __init__(
        self,
        model_path: Path,
        threads: int = 0,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        hidden_states: bool = False,
    ) -> None:
        path = Path(model_path)
        self.path = path / "model.onnx" if path.is_dir() else path
        if not self.path.is_file():
            raise InputError(str(self.path), "ONNX model not found")
        self.threads = threads
        self.providers = providers
        self.hidden_states = hidden_states
        self.session = None

    def open(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        model = str(self.path)
        if self.hidden_states:
            model = _with_hidden_state_outputs(self.path)
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(self.path.parent))
        self.session = ort.InferenceSession(model, options, providers=list(self.providers))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def close(self) -> None:
        self.session = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.session is None:
            self.open()
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


def _with_hidden_state_outputs(path: Path) -> bytes:
    """The model's bytes with every `hidden_states.{i}` value added as a graph output.

    Weights stay where they are (external data is resolved against the model's
    folder), so this costs the size of the graph, not of the weights.
    """
    import onnx_ir as ir

    model = ir.load(path)
    hidden = [v for node in model.graph for v in node.outputs if v.name and v.name.startswith("hidden_states.")]
    if not hidden:
        raise InputError(str(path), "has no hidden_states.* values (exported by an older version?)")
    model.graph.outputs.extend(sorted(hidden, key=lambda v: int(v.name.split(".")[1])))
    return ir.to_proto(model).SerializeToString()


class TransformersRunner(Runner):
    """transformers' Exaone4ForCausalLM on the same checkpoint: an independent second reference."""

    name = "transformers"

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.model = None

    def open(self) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            self.checkpoint_dir, dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def close(self) -> None:
        self.model = None

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from transformers import DynamicCache

        if self.model is None:
            self.open()
        layers = self.model.config.num_hidden_layers
        cache = DynamicCache()  # full-length layers: presents keep every position, as in our contract
        for i in range(layers):
            key = torch.from_numpy(np.ascontiguousarray(feeds[f"past_key_values.{i}.key"])).float()
            value = torch.from_numpy(np.ascontiguousarray(feeds[f"past_key_values.{i}.value"])).float()
            cache.update(key, value, i)
        out = self.model(
            input_ids=torch.from_numpy(feeds["input_ids"]),
            attention_mask=torch.from_numpy(feeds["attention_mask"]),
            position_ids=torch.from_numpy(feeds["position_ids"]),
            cache=cache,
            use_cache=True,
        )
        outputs = {"logits": out.logits.float().numpy()}
        for i, layer in enumerate(out.cache.layers):
            outputs[f"present.{i}.key"] = layer.keys.numpy()
            outputs[f"present.{i}.value"] = layer.values.numpy()
        return outputs


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
