"""Bind a traced graph's fake initializers to checkpoint tensors, lazily.

Each initializer becomes an `onnx_ir.LazyTensor` whose data is read from the
safetensors file and converted to the export dtype only when the model is
saved; `onnx_ir` writes initializers one after another, so at most one tensor is
in memory at a time whatever the model size. The RoPE tables are computed from
the config (llama3 scaling applied) and stored as two shared initializers.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch

from .checkpoint import Checkpoint
from .errors import InputError
from .model import rope_tables

TRACE_PREFIX = "decoder."  # the flat wrapper module's attribute name in exporter/trace.py
ROPE_NAMES = {"rope_cos": 0, "rope_sin": 1}


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A torch tensor as numpy; bf16 goes through ml_dtypes' bfloat16."""
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _checkpoint_tensor(checkpoint: Checkpoint, name: str, dtype: torch.dtype):
    def load() -> ir.Tensor:
        tensor = checkpoint.read(name, dtype)
        if not torch.isfinite(tensor).all():
            raise InputError(str(checkpoint.tensors[name].file), f"tensor {name!r} holds NaN or Inf values")
        return ir.tensor(to_numpy(tensor.contiguous()), name=name)

    return load


def _rope_table(checkpoint: Checkpoint, which: int, dtype: torch.dtype):
    def load() -> ir.Tensor:
        return ir.tensor(to_numpy(rope_tables(checkpoint.config)[which].to(dtype).contiguous()))

    return load


def bind_weights(model: ir.Model, checkpoint: Checkpoint, dtype: torch.dtype) -> int:
    """Give every initializer lazy data from the checkpoint; returns how many were bound."""
    graph = model.graph
    bound = 0
    for value in list(graph.initializers.values()):
        name = value.name.removeprefix(TRACE_PREFIX)
        shape, ir_dtype = value.shape, value.dtype
        if name in ROPE_NAMES:
            loader = _rope_table(checkpoint, ROPE_NAMES[name], dtype)
        else:
            if name == "lm_head.weight":
                name = checkpoint.lm_head_name()
            if name not in checkpoint.tensors:
                raise InputError(str(checkpoint.directory), f"the traced graph needs {name!r}, absent from the checkpoint")
            loader = _checkpoint_tensor(checkpoint, name, dtype)
        value.name = name
        value.const_value = ir.LazyTensor(loader, dtype=ir_dtype, shape=ir.Shape(list(shape)), name=name)
        bound += 1
    return bound
