"""Which TensorRT this process has, whether a GPU is there, and TensorRT's dtypes in torch terms."""

from __future__ import annotations

import ctypes
from pathlib import Path

from ..contract import dtype
from ..errors import InputError


def load_tensorrt():
    """(module, provider name): full TensorRT when importable, else TensorRT for RTX."""
    try:
        import tensorrt as trt

        return trt, "tensorrt"
    except ImportError:
        pass
    try:
        import tensorrt_rtx as trt

        return trt, "tensorrt-rtx"
    except ImportError:
        raise InputError("tensorrt", "neither tensorrt nor tensorrt-rtx is installed (pip install tensorrt-rtx)") from None


def gpu_unavailable_reason() -> str | None:
    """Why an engine cannot run here (no CUDA GPU), or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (TensorRT engines run on NVIDIA GPUs only)"
    return None


def torch_dtype(trt_dtype):
    """The torch dtype of a TensorRT DataType (tensor bindings and plugin buffers alike)."""
    import torch

    return getattr(torch, dtype(str(trt_dtype)).name)


def dtype_name(trt_dtype) -> str:
    """A TensorRT DataType in the contract's spelling ("float16", not "HALF")."""
    return dtype(str(trt_dtype)).name


def check_plugin_loading(provider: str) -> None:
    """Refuse a plugin build that would abort the process: TensorRT for RTX 1.7's ONNX parser dlopens
    `libtensorrt_rtx.so` (no version suffix) when it imports a plugin node, the wheel ships only
    `libtensorrt_rtx.so.1`, and the failure terminates the process from a noexcept region."""
    if provider != "tensorrt-rtx":
        return
    import tensorrt_rtx_libs

    libs = Path(tensorrt_rtx_libs.__file__).parent
    if (libs / "libtensorrt_rtx.so").exists():
        return
    try:
        ctypes.CDLL("libtensorrt_rtx.so")
    except OSError:
        raise InputError("--attention plugin", f"TensorRT for RTX's parser needs {libs}/libtensorrt_rtx.so to load plugins; "
                         f"create it with: ln -s libtensorrt_rtx.so.1 {libs}/libtensorrt_rtx.so (make venv does)") from None
