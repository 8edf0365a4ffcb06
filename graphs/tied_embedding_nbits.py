"""Pass: a tied embedding and lm_head stored once, quantized, for both uses.

Pattern (a tied model's export: the lm_head has no tensor of its own, linear_swap.py):

    Gather(E, input_ids)            E [V, H], an initializer
    MatMul(h, Transpose(E))         the lm_head

Rewrite, with E^T [K = H, N = V] packed once by onnxruntime's quantizer (graphs/nbits.py):

    MatMulNBits(h, E_Q, E_scales[, E_zp])                                   the lm_head
    Reshape(GatherBlockQuantized(E_Q, input_ids, Reshape(E_scales)[, zp]))  the embedding

One initializer `E_Q` feeds both nodes. MatMulNBits' packed layout is [V, K/block, block*bits/8]
uint8, each vocabulary row's H values in blocks along the last axis, low bits first; that is
GatherBlockQuantized's uint8 layout for data of rank 3 gathered on axis 0 and quantized on
axis 2 (block_size = the last axis' logical length), so its output is [..., K/block, block],
reshaped to [..., H]. What cannot be shared is only shape: MatMulNBits' kernel checks its
scales are [V, K/block] and GatherBlockQuantized wants them of data's rank, [V, K/block, 1],
so a Reshape node views the one scales initializer (onnxruntime folds it at load, a copy of
the scales only). Zero points (asymmetric only): at 8 bits the same view; at 4 bits MatMulNBits
packs two blocks' zero points a byte while GatherBlockQuantized wants one a byte (the low
nibble), so the gather gets its own [V, K/block, 1] copy, unpacked from the packed ones.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .matmul_nbits import register_packed, replace_with_matmul_nbits
from .nbits import MS_DOMAIN, PackedWeight, add_initializer, pack_weight


def find_tied_pair(graph: ir.Graph) -> tuple[ir.Node, ir.Node, ir.Node] | None:
    """(Gather, Transpose, MatMul) on one initializer, or None when the model is not tied."""
    for gather in graph:
        table = gather.inputs[0] if gather.op_type == "Gather" and gather.domain == "" else None
        if table is None or not table.is_initializer() or len(table.shape) != 2:
            continue
        for transpose, _ in table.uses():
            perm = transpose.attributes.get("perm")
            if transpose.op_type != "Transpose" or perm is None or list(perm.as_ints()) != [1, 0]:
                continue
            for matmul, index in transpose.outputs[0].uses():
                if matmul.op_type == "MatMul" and matmul.domain == "" and index == 1:
                    return gather, transpose, matmul
    return None


def quantize_tied_embedding(model: ir.Model, bits: int, block_size: int, symmetric: bool, accuracy_level: int) -> dict[str, int]:
    """Rewrite the tied pair; returns {"tied": 0 or 1, "bytes_before", "bytes_after", "bytes_if_stored_twice", ...}."""
    graph = model.graph
    pair = find_tied_pair(graph)
    if pair is None:
        return {"tied": 0}
    gather, transpose, matmul = pair
    table = gather.inputs[0]
    vocab, hidden = table.shape
    packed = pack_weight(np.ascontiguousarray(table.const_value.numpy().T), bits, block_size, symmetric, accuracy_level)
    tensors = register_packed(graph, table.name, packed)
    replace_with_matmul_nbits(graph, matmul, matmul.inputs[0], tensors, packed)
    embedding, gather_bytes = _gather_block_quantized(graph, gather, tensors, packed, hidden)
    graph.remove(transpose, safe=True)
    before = table.const_value.nbytes
    if not table.uses():
        graph.initializers.pop(table.name)
    model.opset_imports.setdefault(MS_DOMAIN, 1)
    return {"tied": 1, "bytes_before": before, "bytes_after": packed.nbytes + gather_bytes,
            "bytes_if_stored_twice": 2 * packed.nbytes, "gather_only_bytes": gather_bytes}


def _gather_block_quantized(graph: ir.Graph, gather: ir.Node, tensors: list[ir.Value | None], packed: PackedWeight, hidden: int):
    """GatherBlockQuantized on the shared packed weight, reshaped back to [..., H]; returns (node, extra bytes stored)."""
    data, scales, zero_points = tensors
    vocab, blocks = packed.n, packed.k_blocks
    new_nodes, extra = [], 0
    view = add_initializer(graph, f"{data.name}_block_view", np.array([vocab, blocks, 1], np.int64))
    reshape_scales = ir.Node("", "Reshape", [scales, view], name=f"{gather.name}_scales_view")
    new_nodes.append(reshape_scales)
    inputs = [data, gather.inputs[1], reshape_scales.outputs[0]]
    if zero_points is not None:
        if packed.bits == 8:
            reshape_zp = ir.Node("", "Reshape", [zero_points, view], name=f"{gather.name}_zero_points_view")
            new_nodes.append(reshape_zp)
            inputs.append(reshape_zp.outputs[0])
        else:
            unpacked = np.stack([packed.zero_points & 0x0F, packed.zero_points >> 4], axis=-1).reshape(vocab, -1)[:, :blocks]
            gather_zp = add_initializer(graph, f"{data.name}_gather_zero_points", unpacked.reshape(vocab, blocks, 1).astype(np.uint8))
            extra += gather_zp.const_value.nbytes
            inputs.append(gather_zp)
    axis = gather.attributes.get("axis")
    if axis is not None and axis.as_int() != 0:
        raise ValueError(f"{gather.name}: embedding Gather on axis {axis.as_int()}, expected 0")
    lookup = ir.Node(MS_DOMAIN, "GatherBlockQuantized", inputs, [
        ir.AttrInt64("gather_axis", 0), ir.AttrInt64("quantize_axis", 2),
        ir.AttrInt64("block_size", packed.block_size), ir.AttrInt64("bits", packed.bits)], name=f"{gather.name}_Q{packed.bits}")
    rank = len(gather.inputs[1].shape) if gather.inputs[1].shape is not None else 2
    shape = add_initializer(graph, f"{gather.name}_hidden_shape", np.array([0] * rank + [hidden], np.int64))
    flatten = ir.Node("", "Reshape", [lookup.outputs[0], shape], name=f"{gather.name}_hidden")
    new_nodes += [lookup, flatten]
    ir.convenience.replace_nodes_and_values(graph, gather, [gather], new_nodes, list(gather.outputs), list(flatten.outputs))
    return flatten, extra

