"""Pass: lower `exaone4::Attention` to what TensorRT's ONNX parser maps to native layers.

TensorRT (10.x and TensorRT for RTX) imports opset-23 `RotaryEmbedding` as a
rotary layer and opset-23 `Attention` as its fused attention layer, but only an
`Attention` with one output and no `softmax_precision`. So the rewrite, per layer:

    q, k   RotaryEmbedding (if the layer rotates), reshaped to [B, heads, S, D]
    K, V   Concat(past, new) along the sequence: these are the layer's presents
    out    Attention(q, K, V, bool mask [B, 1, S, T]) -> [B, H, S, D] -> [B, S, H*D]

The fused kernels keep softmax statistics in fp32 on their own; a float32
attention has no fused kernel, so engines are built in fp16 or fp8
(docs/tensorrt.md).
"""

from __future__ import annotations

import onnx_ir as ir

from .attention_parts import CustomAttention, allowed_mask, constant, lower_each_attention, rotate


def _heads_first(tape: ir.tape.Tape, x: ir.Value, head_dim: int) -> ir.Value:
    """[B, S, heads*D] -> [B, heads, S, D]."""
    split = tape.op("Reshape", [x, constant(tape, [0, 0, -1, head_dim])])  # [B, S, heads, D]
    return tape.op("Transpose", [split], attributes={"perm": [0, 2, 1, 3]})


def _trt_attention(tape: ir.tape.Tape, attn: CustomAttention) -> list[ir.Value]:
    q, k = attn.inputs["query"], attn.inputs["key"]
    if attn.rope:
        q, k = rotate(tape, attn, q, attn.num_heads), rotate(tape, attn, k, attn.kv_num_heads)
    q4 = _heads_first(tape, q, attn.head_dim)  # [B, H, S, D]
    present_key = tape.op("Concat", [attn.inputs["past_key"], _heads_first(tape, k, attn.head_dim)], attributes={"axis": 2})
    present_value = tape.op("Concat", [attn.inputs["past_value"], _heads_first(tape, attn.inputs["value"], attn.head_dim)],
                            attributes={"axis": 2})
    out = tape.op("Attention", [q4, present_key, present_value, allowed_mask(tape, attn)], attributes={"scale": attn.scale})
    merged = tape.op("Reshape", [tape.op("Transpose", [out], attributes={"perm": [0, 2, 1, 3]}), constant(tape, [0, 0, -1])])
    return [merged, present_key, present_value]  # [B, S, H*D], [B, KV, T, D] x 2


def lower_trt(model: ir.Model) -> dict[str, int]:
    """Returns {"attention": n, "rotary": m}."""
    lowered, rotary = lower_each_attention(model, _trt_attention)
    return {"attention": lowered, "rotary": rotary}
