"""The ordered graph passes for each export target.

Every pass is a plain function `pass(model) -> {count name: number}` that edits an
`onnx_ir.Model` in place; the pipeline runs them in order and returns their
counts, which the export manifest records.

    canonical  keep `exaone4::Attention` (with its reference function body)
    ort        lower to com.microsoft.GroupQueryAttention (fastest on onnxruntime)
    standard   lower to opset-23 Attention / RotaryEmbedding (any ONNX runtime)
    trt        lower to what TensorRT's parser maps to native attention / rotary layers
    trt-plugin keep one node per layer for our TensorRT IPluginV3 (exporter/trt/plugin.py)

Two options add a pass before the lowering, so every target inherits them:
`kv_cache="window"` runs `bound_window_cache` (a bounded sliding-window cache),
`logits="last"` runs `keep_last_logits` (the lm_head reads the last position only).
`kv_cache="static"` (ort only) swaps the lowering for `lower_ort_static`: one
in-place buffer per layer, rows right-aligned, so "last" picks each row's own
last token (`keep_last_logits_per_row`).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from .cleanup import cleanup
from .fold_constants import fold_constants
from .last_logits import keep_last_logits, keep_last_logits_per_row
from .lower_ort import lower_ort
from .lower_ort_static import lower_ort_static
from .lower_standard import lower_standard
from .lower_trt import lower_trt
from .lower_trt_plugin import lower_trt_plugin
from .window_cache import bound_window_cache

Pass = Callable[[ir.Model], dict[str, int]]
KV_CACHES = ("full", "window", "static")
STATIC_TARGETS = ("ort",)  # targets with an in-place cache lowering
LOGITS = ("all", "last")

TARGETS: dict[str, list[tuple[str, Pass]]] = {
    "canonical": [],
    "ort": [("lower_ort", lower_ort)],
    "standard": [("lower_standard", lower_standard)],
    "trt": [("lower_trt", lower_trt)],
    "trt-plugin": [("lower_trt_plugin", lower_trt_plugin)],
}


def passes_for(target: str, kv_cache: str = "full", logits: str = "all") -> list[tuple[str, Pass]]:
    """The optional passes, the target's lowering, constant folding, then clean-up."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if kv_cache not in KV_CACHES:
        raise ValueError(f"unknown kv cache {kv_cache!r}; choose from {', '.join(KV_CACHES)}")
    if logits not in LOGITS:
        raise ValueError(f"unknown logits kind {logits!r}; choose from {', '.join(LOGITS)}")
    if kv_cache == "static":
        if target not in STATIC_TARGETS:
            raise ValueError(f"an in-place (static) KV cache needs target {' or '.join(STATIC_TARGETS)}, not {target!r}")
        options = [("last_logits", keep_last_logits_per_row)] if logits == "last" else []
        lowering = [("lower_ort_static", lower_ort_static)]
    else:
        options = [("window_cache", bound_window_cache)] if kv_cache == "window" else []
        options += [("last_logits", keep_last_logits)] if logits == "last" else []
        lowering = TARGETS[target]
    return [*options, *lowering, ("fold_constants", fold_constants), ("cleanup", cleanup)]


def run_pipeline(
    model: ir.Model,
    target: str,
    on_pass: Callable[[str], None] | None = None,
    kv_cache: str = "full",
    logits: str = "all",
) -> dict[str, dict[str, int]]:
    """Run the passes in order; returns {pass name: its counts}."""
    counts = {}
    for name, graph_pass in passes_for(target, kv_cache, logits):
        if on_pass:
            on_pass(name)
        counts[name] = graph_pass(model)
    return counts
