"""Graph pieces shared by the attention lowerings: the custom node's fields, masks, RoPE.

Each function appends nodes to an `onnx_ir.tape.Tape` and returns the value it
built. Masks follow the custom-op contract (graphs/attention_function.py): query
i of the chunk sits at cache index P + i, P = T - S, T = attention_mask length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from .attention_function import DOMAIN, INPUTS, OP_TYPE

BOOL = 9


@dataclass(frozen=True)
class CustomAttention:
    """The inputs and attributes of one `exaone4::Attention` node, by name."""

    inputs: dict[str, ir.Value]
    num_heads: int
    kv_num_heads: int
    head_dim: int
    window: int
    rope: bool
    scale: float


def is_custom_attention(node: ir.Node) -> bool:
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def read_custom_attention(node: ir.Node) -> CustomAttention:
    attrs = node.attributes
    return CustomAttention(
        inputs=dict(zip(INPUTS, node.inputs)),
        num_heads=attrs["num_heads"].as_int(),
        kv_num_heads=attrs["kv_num_heads"].as_int(),
        head_dim=attrs["head_dim"].as_int(),
        window=attrs["window"].as_int(),
        rope=bool(attrs["rope"].as_int()),
        scale=attrs["scale"].as_float(),
    )


def constant(tape: ir.tape.Tape, array) -> ir.Value:
    return tape.op("Constant", [], attributes={"value": ir.tensor(np.asarray(array))})


def lengths(tape: ir.tape.Tape, attn: CustomAttention) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(S, T, P) as int64 scalars: chunk length, cache length after the chunk, past length."""
    squeeze = lambda v: tape.op("Squeeze", [v])  # noqa: E731
    seq = squeeze(tape.op("Shape", [attn.inputs["position_ids"]], attributes={"start": 1, "end": 2}))
    total = squeeze(tape.op("Shape", [attn.inputs["attention_mask"]], attributes={"start": 1, "end": 2}))
    return seq, total, tape.op("Sub", [total, seq])


def allowed_mask(tape: ir.tape.Tape, attn: CustomAttention) -> ir.Value:
    """bool [B, 1, S, T]: causal, inside the window (if any), and not padding."""
    seq, total, past = lengths(tape, attn)
    one, zero = constant(tape, np.int64(1)), constant(tape, np.int64(0))
    query_index = tape.op("Unsqueeze", [tape.op("Range", [past, total, one]), constant(tape, [1])])  # [S, 1]
    key_index = tape.op("Range", [zero, total, one])  # [T]
    allowed = tape.op("LessOrEqual", [key_index, query_index])  # [S, T]
    if attn.window > 0:
        lower = tape.op("Sub", [query_index, constant(tape, np.int64(attn.window))])
        allowed = tape.op("And", [allowed, tape.op("Greater", [key_index, lower])])
    return tape.op("And", [allowed, not_padding(tape, attn)])  # [B, 1, S, T]


def not_padding(tape: ir.tape.Tape, attn: CustomAttention) -> ir.Value:
    """bool [B, 1, 1, T] from the int64 attention_mask."""
    mask = tape.op("Cast", [attn.inputs["attention_mask"]], attributes={"to": BOOL})
    return tape.op("Unsqueeze", [mask, constant(tape, [1, 2])])


def padding_bias(tape: ir.tape.Tape, attn: CustomAttention) -> ir.Value:
    """Additive bias [B, 1, S, T] in the query's dtype: 0 on real keys, a large negative value on padding.

    fp16 uses -1e4, not the format's lowest value: a padding query sees only
    padding, and lowest + score rounds to -inf in fp16, giving NaN rows whose
    NaN keys/values then reach real queries through 0 * NaN. exp(-1e4) is 0.
    """
    like = attn.inputs["query"]
    if like.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16):
        raise ValueError(f"exaone4::Attention query {like.name!r} has dtype {like.dtype}; expected float or float16")
    seq, total, _ = lengths(tape, attn)
    lowest = -1e4 if like.dtype == ir.DataType.FLOAT16 else np.finfo(np.float32).min
    bias = tape.op(
        "Where",
        [not_padding(tape, attn), constant(tape, np.array(0.0, np.float32)), constant(tape, np.array(lowest, np.float32))],
    )
    batch = tape.op("Shape", [attn.inputs["attention_mask"]], attributes={"start": 0, "end": 1})
    unsqueeze0 = lambda v: tape.op("Unsqueeze", [v, constant(tape, [0])])  # noqa: E731
    shape = tape.op("Concat", [batch, constant(tape, [1]), unsqueeze0(seq), unsqueeze0(total)], attributes={"axis": 0})
    return tape.op("CastLike", [tape.op("Expand", [bias, shape]), like])


def rotate(tape: ir.tape.Tape, attn: CustomAttention, x: ir.Value, heads: int) -> ir.Value:
    """Opset-23 RotaryEmbedding of x [B, S, heads*D] at position_ids (rotate-half layout)."""
    return tape.op(
        "RotaryEmbedding",
        [x, attn.inputs["cos_table"], attn.inputs["sin_table"], attn.inputs["position_ids"]],
        attributes={"num_heads": heads},
    )


def lower_each_attention(model: ir.Model, rewrite) -> tuple[int, int]:
    """Replace every custom attention node by what `rewrite(tape, attn)` builds on a fresh tape.

    `rewrite` returns the values that take the node's outputs' place. Returns
    (nodes lowered, layers that rotate).
    """
    graph = model.graph
    lowered = rotary = 0
    for node in list(graph):
        if not is_custom_attention(node):
            continue
        attn = read_custom_attention(node)
        tape = ir.tape.Tape()
        replace_node(graph, node, tape, rewrite(tape, attn))
        lowered += 1
        rotary += attn.rope
    return lowered, rotary


def replace_node(graph: ir.Graph, node: ir.Node, tape: ir.tape.Tape, outputs) -> None:
    """Put the tape's nodes where `node` was and route its outputs to `outputs`."""
    ir.convenience.replace_nodes_and_values(
        graph,
        insertion_point=node,
        old_nodes=[node],
        new_nodes=list(tape.nodes),
        old_values=list(node.outputs),
        new_values=list(outputs),
    )


def standard_attention(tape: ir.tape.Tape, attn: CustomAttention) -> list[ir.Value]:
    """Opset-23 RotaryEmbedding (if the layer rotates) + bool mask + Attention, softmax in fp32
    (`softmax_precision = 1`)."""
    q, k = attn.inputs["query"], attn.inputs["key"]
    if attn.rope:
        q, k = rotate(tape, attn, q, attn.num_heads), rotate(tape, attn, k, attn.kv_num_heads)
    attributes = {"q_num_heads": attn.num_heads, "kv_num_heads": attn.kv_num_heads, "scale": attn.scale,
                  "softmax_precision": 1}  # TensorProto.FLOAT
    outputs = tape.op_multi_out(
        "Attention",
        [q, k, attn.inputs["value"], allowed_mask(tape, attn), attn.inputs["past_key"], attn.inputs["past_value"]],
        attributes=attributes,
        num_outputs=3,
    )
    return list(outputs)
