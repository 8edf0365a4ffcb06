"""A TensorRT engine behind the Runner interface (needs a CUDA GPU and the TensorRT runtime).

Inputs are copied to the GPU as torch tensors, outputs are allocated there with
the shapes the execution context reports, and everything comes back as numpy.
A call with an empty past uses the prefill profile, any other the decode profile
(profiles.py); a chunk on top of a past fits neither.

`gpu_unavailable_reason()` (provider.py) says why the runner cannot run here,
which `verify` reports as the reason the `trt` backend was skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import EngineDir
from ..contract import past_name
from ..errors import InputError
from ..runners import Runner
from .plugin import register
from .profiles import DECODE, PREFILL
from .provider import gpu_unavailable_reason, load_tensorrt, torch_dtype


class TrtRunner(Runner):
    name = "trt"

    def __init__(self, engine_dir: Path) -> None:
        self.artifact = EngineDir.open(engine_dir)
        self.context = None

    def open(self) -> None:
        reason = gpu_unavailable_reason()
        if reason:
            raise InputError("--backend trt", reason)
        trt, _ = load_tensorrt()
        logger = trt.Logger(trt.Logger.ERROR)
        if self.artifact.build.attention == "plugin":  # the engine names the plugin; its code lives here
            register(trt)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.artifact.engine_path.read_bytes())
        if self.engine is None:
            raise InputError(str(self.artifact.directory), "TensorRT could not deserialize the engine on this GPU")
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
        profile = PREFILL if feeds[past_name(0, "key")].shape[2] == 0 else DECODE
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
