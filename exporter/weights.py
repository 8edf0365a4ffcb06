"""Bind a traced graph's fake initializers to checkpoint tensors, lazily.

Each weight initializer becomes a `StreamedTensor` that reads its checkpoint
tensor only when the model is saved, converting the dtype (and transposing, for
the pre-transposed Linear weights `*.weight_t`) a block of rows at a time. The
RoPE tables are computed from the config (llama3 scaling applied) and stored as
two shared initializers.
"""

from __future__ import annotations

import onnx_ir as ir
import torch

from .checkpoint import Checkpoint
from .errors import InputError
from .linear_swap import TRANSPOSED_SUFFIX
from .model import rope_tables
from .stream import StreamedTensor, locate_tensors, to_numpy

TRACE_PREFIX = "decoder."  # the flat wrapper module's attribute name in exporter/trace.py
ROPE_NAMES = {"rope_cos": 0, "rope_sin": 1}


def _rope_table(checkpoint: Checkpoint, which: int, dtype: torch.dtype):
    def load() -> ir.Tensor:
        return ir.tensor(to_numpy(rope_tables(checkpoint.config)[which].to(dtype).contiguous()))

    return load


def bind_weights(model: ir.Model, checkpoint: Checkpoint, dtype: torch.dtype, on_written=None) -> int:
    """Give every initializer lazy data; returns how many are streamed from the checkpoint.

    `on_written(name)` is called as each weight reaches the output file (progress bars).
    """
    locations = {}
    for path in checkpoint.files:
        locations.update(locate_tensors(path))
    bound = 0
    for value in list(model.graph.initializers.values()):
        name = value.name.removeprefix(TRACE_PREFIX)
        if name.rsplit(".", 1)[-1] in ROPE_NAMES:  # the decoder's buffers, under whichever prefix the class has
            name = name.rsplit(".", 1)[-1]
            value.name = name
            value.const_value = ir.LazyTensor(
                _rope_table(checkpoint, ROPE_NAMES[name], dtype), dtype=value.dtype, shape=value.shape, name=name
            )
            continue
        transpose = name.endswith(TRANSPOSED_SUFFIX)
        source = name.removesuffix(TRANSPOSED_SUFFIX)
        if source.startswith("lm_head.") and source not in checkpoint.tensors:
            source = checkpoint.lm_head_name()
        if source not in locations:
            raise InputError(str(checkpoint.directory), f"the traced graph needs {source!r}, absent from the checkpoint")
        value.name = name
        value.const_value = StreamedTensor(locations[source], dtype, transpose, name=name, ir_dtype=value.dtype,
                                           on_written=on_written)
        bound += 1
    return bound
