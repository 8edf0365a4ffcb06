"""The runners of this process: the reference model, transformers, onnxruntime.

Each implements `Runner.infer(feeds) -> outputs` (exporter/session.py) with numpy
arrays named by the IO contract (docs/architecture.md#io-contract, names in
exporter/contract.py): input_ids, attention_mask, position_ids,
past_key_values.{i}.key/.value in; logits, present.{i}.key/.value out. The TensorRT
runner lives with the rest of TensorRT (exporter/trt/runner.py).

    with OrtRunner(export_dir) as runner:
        session = KVCacheSession(runner, layout)
        logits = session.prefill(ids, mask)      # [B, S, vocab]
        logits = session.decode(next_tokens)     # [B, 1, vocab]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import parse_config
from .contract import (
    ATTENTION_MASK,
    CONFIG_FILE,
    END_LOGITS,
    HIDDEN_STATES,
    INPUT_IDS,
    KV_KINDS,
    LAST_HIDDEN_STATE,
    LOGITS,
    MODEL_FILE,
    POSITION_IDS,
    START_LOGITS,
    CacheLayout,
    hidden_state_name,
    past_name,
    present_for,
    present_name,
)
from .errors import InputError
from .jsonfile import read_json
from .session import KVCacheSession, Runner, StaticKVCacheSession

__all__ = ["CacheLayout", "KVCacheSession", "OrtRunner", "Runner", "TorchHeadRunner", "TorchRunner", "TransformersHeadRunner",
           "TransformersRunner"]


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
        past = lambda i, kind: torch.from_numpy(np.ascontiguousarray(feeds[past_name(i, kind)])).to(dtype)  # noqa: E731
        logits, keys, values, hidden = self.model(
            torch.from_numpy(feeds[INPUT_IDS]),
            torch.from_numpy(feeds[ATTENTION_MASK]),
            torch.from_numpy(feeds[POSITION_IDS]),
            [past(i, "key") for i in range(layers)],
            [past(i, "value") for i in range(layers)],
            output_hidden_states=True,
        )
        outputs = {LOGITS: logits.float().numpy()}
        if self.hidden_states:
            outputs.update({hidden_state_name(i): h.float().numpy() for i, h in enumerate(hidden)})
        for i in range(layers):
            outputs[present_name(i, "key")] = keys[i].numpy()
            outputs[present_name(i, "value")] = values[i].numpy()
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
        static_context: int | None = None,
    ) -> None:
        path = Path(model_path)
        self.path = path / MODEL_FILE if path.is_dir() else path
        if not self.path.is_file():
            raise InputError(str(self.path), "ONNX model not found")
        self.threads = threads
        self.providers = providers
        self.hidden_states = hidden_states
        self.static_context = static_context  # buffer length of an in-place (--kv-cache static) export
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

    def infer_in_place(self, feeds: dict[str, np.ndarray], caches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One buffer bound as both past and present of each layer (I/O binding): the cache is written where it is.

        onnxruntime wraps the numpy buffers without copying, and GroupQueryAttention
        sees past and present at one address (`past_present_share_buffer`).
        """
        import onnxruntime as ort

        if self.session is None:
            self.open()
        binding = self.session.io_binding()
        keep = {name: np.ascontiguousarray(value) for name, value in feeds.items()}  # alive until the run ends
        for name, value in keep.items():
            binding.bind_cpu_input(name, value)
        in_place = {}
        for name, buffer in caches.items():
            value = ort.OrtValue.ortvalue_from_numpy(buffer)
            binding.bind_ortvalue_input(name, value)
            in_place[present_for(name)] = value
        others = [name for name in self.output_names if name not in in_place]
        for name in self.output_names:
            if name in in_place:
                binding.bind_ortvalue_output(name, in_place[name])
            else:
                binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {name: value.numpy() for name, value in zip(self.output_names, values) if name in others}

    def new_session(self, layout: CacheLayout):
        if self.static_context:
            return StaticKVCacheSession(self, layout, self.static_context)
        return KVCacheSession(self, layout)


def _with_hidden_state_outputs(path: Path) -> bytes:
    """The model's bytes with every `hidden_states.{i}` value added as a graph output.

    Weights stay where they are (external data is resolved against the model's
    folder), so this costs the size of the graph, not of the weights.
    """
    import onnx_ir as ir

    model = ir.load(path)
    hidden = [v for node in model.graph for v in node.outputs if v.name and v.name.startswith(HIDDEN_STATES)]
    if not hidden:
        raise InputError(str(path), "has no hidden_states.* values (exported by an older version?)")
    model.graph.outputs.extend(sorted(hidden, key=lambda v: int(v.name.split(".")[1])))
    return ir.to_proto(model).SerializeToString()


def transformers_config(checkpoint_dir: Path):
    """transformers' config, with `layer_types` spelled out from our parse when config.json has none.

    transformers cannot expand a string `sliding_window_pattern` ("LLLG", as LG writes
    the 32B's) nor a null window without `layer_types` (EXAONE 4 trap 3): it would
    raise inside `from_pretrained`. Our parser's layer kinds are the ones exported.
    """
    import transformers

    raw = read_json(Path(checkpoint_dir) / CONFIG_FILE)
    if "layer_types" not in raw:
        raw["layer_types"] = [kind.value for kind in parse_config(raw).layer_kinds]
    raw.pop("auto_map", None)  # never code from a checkpoint
    return transformers.Exaone4Config(**raw)


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
            self.checkpoint_dir, config=transformers_config(self.checkpoint_dir), dtype=torch.float32, attn_implementation="eager"
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
            key, value = (torch.from_numpy(np.ascontiguousarray(feeds[past_name(i, kind)])).float() for kind in KV_KINDS)
            cache.update(key, value, i)
        out = self.model(
            input_ids=torch.from_numpy(feeds[INPUT_IDS]),
            attention_mask=torch.from_numpy(feeds[ATTENTION_MASK]),
            position_ids=torch.from_numpy(feeds[POSITION_IDS]),
            cache=cache,
            use_cache=True,
        )
        outputs = {LOGITS: out.logits.float().numpy()}
        for i, layer in enumerate(out.cache.layers):
            outputs[present_name(i, "key")] = layer.keys.numpy()
            outputs[present_name(i, "value")] = layer.values.numpy()
        return outputs


class TorchHeadRunner(Runner):
    """The reference model of a head (exporter/model_heads.py): input_ids, attention_mask -> its outputs."""

    name = "torch"

    def __init__(self, model) -> None:
        self.model = model

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.model.predict(torch.from_numpy(feeds[INPUT_IDS]), torch.from_numpy(feeds[ATTENTION_MASK]))
        return {name: value.numpy() for name, value in outputs.items()}


class TransformersHeadRunner(Runner):
    """transformers' own class of a head checkpoint (its `architectures`), loaded from the same files.

    Called as a user calls it (ids and mask; transformers numbers positions itself).
    Only the transformers class of the architecture our config parser accepted is
    looked up by name; `auto_map` and remote code are never used.
    """

    name = "transformers"

    def __init__(self, checkpoint_dir: Path, architecture: str) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.architecture = architecture
        self.model = None

    def open(self) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        self.model = getattr(transformers, self.architecture).from_pretrained(
            self.checkpoint_dir, config=transformers_config(self.checkpoint_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def close(self) -> None:
        self.model = None

    @torch.no_grad()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.model is None:
            self.open()
        out = self.model(input_ids=torch.from_numpy(feeds[INPUT_IDS]), attention_mask=torch.from_numpy(feeds[ATTENTION_MASK]))
        names = (LOGITS, LAST_HIDDEN_STATE, START_LOGITS, END_LOGITS)
        return {name: getattr(out, name).float().numpy() for name in names if getattr(out, name, None) is not None}
