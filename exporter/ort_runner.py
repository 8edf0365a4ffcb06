"""onnxruntime behind the Runner interface, torch-free: `OrtRunner`.

Runs an export's ONNX on the CPU (or the given providers) with the IO contract's
names (exporter/contract.py). An export with an in-place cache (`--kv-cache
static`) is run through `infer_in_place`, which binds one buffer per layer as
both past and present (I/O binding), so nothing of the cache is copied. numpy
and onnxruntime only: this module ships into Triton model repositories with the
chat code (the resident engine, exporter/triton_models/engine.py, runs it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contract import HIDDEN_STATES, MODEL_FILE, CacheLayout, present_for
from .errors import InputError
from .session import KVCacheSession, Runner, StaticKVCacheSession


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
