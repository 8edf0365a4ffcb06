"""The ordered graph passes for each export target.

Every pass is a plain function `pass(model) -> {count name: number}` that edits an
`onnx_ir.Model` in place; the pipeline runs them in order and returns their
counts, which the export manifest records.

    canonical  keep `exaone4::Attention` (with its reference function body)
    ort        lower to com.microsoft.GroupQueryAttention (fastest on onnxruntime)
    standard   lower to opset-23 Attention / RotaryEmbedding (any ONNX runtime)
    trt        lower to what TensorRT's parser maps to native attention / rotary layers
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from .cleanup import cleanup
from .fold_constants import fold_constants
from .lower_ort import lower_ort
from .lower_standard import lower_standard
from .lower_trt import lower_trt

Pass = Callable[[ir.Model], dict[str, int]]

TARGETS: dict[str, list[tuple[str, Pass]]] = {
    "canonical": [],
    "ort": [("lower_ort", lower_ort)],
    "standard": [("lower_standard", lower_standard)],
    "trt": [("lower_trt", lower_trt)],
}


def passes_for(target: str) -> list[tuple[str, Pass]]:
    """The target's lowering, constant folding, then clean-up."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    return [*TARGETS[target], ("fold_constants", fold_constants), ("cleanup", cleanup)]


def run_pipeline(model: ir.Model, target: str, on_pass: Callable[[str], None] | None = None) -> dict[str, dict[str, int]]:
    """Run the target's passes in order; returns {pass name: its counts}."""
    counts = {}
    for name, graph_pass in passes_for(target):
        if on_pass:
            on_pass(name)
        counts[name] = graph_pass(model)
    return counts
