"""Pass: weight-only int8 / int4 projections, `MatMul(x, W)` -> `com.microsoft::MatMulNBits`.

Pattern: a default-domain MatMul whose second input is a rank-2 initializer W [K, N] (every
pre-transposed Linear, `*.weight_t`, including an untied lm_head). Rewrite:

    MatMulNBits(x, W_Q{bits}, W_scales[, W_zero_points])    K, N, bits, block_size[, accuracy_level]

W is packed by onnxruntime's own quantizer (graphs/nbits.py), one weight at a time. `weights`
may hold replacement values for some W (the calibrated method's GPTQ-rounded weights,
exporter/gptq.py), which are then packed instead of the stored ones; `bits_of` may give some
weights other widths (an int8 lm_head in an int4 export). A MatMul on a computed B (the tied
lm_head's Transpose, attention's matmuls inside fused ops) is left alone: the tied pair has its
own pass, graphs/tied_embedding_nbits.py, which runs first.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from .nbits import MS_DOMAIN, PackedWeight, add_initializer, pack_weight


def quantize_matmuls_nbits(
    model: ir.Model,
    bits: int,
    block_size: int,
    symmetric: bool,
    accuracy_level: int,
    weights: Mapping[str, np.ndarray] | None = None,
    bits_of: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Rewrite every MatMul on an initializer; returns counts and the weights' bytes before and after."""
    graph = model.graph
    weights, bits_of = weights or {}, bits_of or {}
    counts = {"matmuls": 0, "kept_float": 0, "bytes_before": 0, "bytes_after": 0}
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain != "":
            continue
        weight = node.inputs[1]
        if weight is None or not weight.is_initializer() or weight.const_value is None or len(weight.shape) != 2:
            counts["kept_float"] += 1
            continue
        array = weight.const_value.numpy()
        if weight.name in weights:
            array = np.asarray(weights[weight.name], dtype=array.dtype)
        packed = pack_weight(array, bits_of.get(weight.name, bits), block_size, symmetric, accuracy_level)
        replace_with_matmul_nbits(graph, node, node.inputs[0], register_packed(graph, weight.name, packed), packed)
        counts["matmuls"] += 1
        counts["bytes_before"] += weight.const_value.nbytes
        counts["bytes_after"] += packed.nbytes
        if not weight.uses():
            graph.initializers.pop(weight.name)
    if counts["matmuls"]:
        model.opset_imports.setdefault(MS_DOMAIN, 1)
    return counts


def register_packed(graph: ir.Graph, name: str, packed: PackedWeight) -> list[ir.Value | None]:
    """The packed weight, scales and zero points as initializers named after the weight (onnxruntime's names)."""
    values: list[ir.Value | None] = []
    for suffix, array in ((f"_Q{packed.bits}", packed.packed), ("_scales", packed.scales), ("_zero_points", packed.zero_points)):
        if array is None:
            values.append(None)
            continue
        values.append(add_initializer(graph, name + suffix, array))
    return values


def replace_with_matmul_nbits(graph: ir.Graph, node: ir.Node, x: ir.Value, tensors: list[ir.Value | None], packed: PackedWeight) -> ir.Node:
    """MatMulNBits(x, packed, scales[, zero points]) in place of `node` (its output keeps name, type and uses)."""
    inputs = tensors if tensors[2] is not None else tensors[:2]
    attributes = [ir.AttrInt64(key, value) for key, value in packed.attributes().items()]
    new = ir.Node(MS_DOMAIN, "MatMulNBits", [x, *inputs], attributes, name=f"{node.name}_Q{packed.bits}")
    ir.convenience.replace_nodes_and_values(graph, node, [node], [new], list(node.outputs), list(new.outputs))
    return new
