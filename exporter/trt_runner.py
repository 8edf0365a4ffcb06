"""A TensorRT engine behind the Runner interface (needs a CUDA GPU and the TensorRT runtime).

Inputs are copied to the GPU as torch tensors, outputs are allocated there with
the shapes the execution context reports, and everything comes back as numpy.
A call with an empty past uses the prefill profile (0), any other the decode
profile (1) (exporter/engine.py); a chunk on top of a past fits neither.

`unavailable_reason()` says why the runner cannot run here (no GPU, no
runtime), which `verify` reports as the reason the `trt` backend was skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .engine import ENGINE_FILE, load_tensorrt, read_build, register_attention_plugin
from .errors import InputError
from .runners import Runner

TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT64": "int64", "INT32": "int32", "BOOL": "bool"}


def torch_dtype(trt_dtype):
    """The torch dtype of a TensorRT DataType (tensor bindings and plugin buffers alike)."""
    import torch

    return getattr(torch, TORCH_DTYPES[str(trt_dtype).split(".")[-1]])


def unavailable_reason() -> str | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (TensorRT engines run on NVIDIA GPUs only)"
    return None


class TrtRunner(Runner):
    name = "trt"

    def __init__(self, engine_dir: Path) -> None:
        self.engine_dir = Path(engine_dir)
        self.build = read_build(self.engine_dir)
        self.context = None

    def open(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise InputError("--backend trt", reason)
        trt, _ = load_tensorrt()
        logger = trt.Logger(trt.Logger.ERROR)
        if self.build.get("options", {}).get("attention") == "plugin":  # the engine names the plugin; its code lives here
            register_attention_plugin(trt)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine((self.engine_dir / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise InputError(str(self.engine_dir), "TensorRT could not deserialize the engine on this GPU")
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.trt = trt

    def close(self) -> None:
        self.context = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if self.context is None:
            self.open()
        stream = torch.cuda.current_stream()
        profile = 0 if feeds["past_key_values.0.key"].shape[2] == 0 else 1
        self.context.set_optimization_profile_async(profile, stream.cuda_stream)
        keep = []
        for name in self.names:
            if self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT:
                tensor = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
                self.context.set_input_shape(name, tuple(tensor.shape))
                self.context.set_tensor_address(name, tensor.data_ptr())
                keep.append(tensor)
        outputs = {}
        for name in self.names:
            if self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.OUTPUT:
                dtype = torch_dtype(self.engine.get_tensor_dtype(name))
                tensor = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
                self.context.set_tensor_address(name, tensor.data_ptr())
                outputs[name] = tensor
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}
