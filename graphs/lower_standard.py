"""Pass: lower `exaone4::Attention` to standard ONNX (opset 23) so any runtime can run it.

Rewrite, per layer: RotaryEmbedding on q and k when the layer uses RoPE; a bool
mask [B, 1, S, T] (causal, window, padding); opset-23 `Attention` with GQA
heads, past/present KV and softmax in fp32 (`softmax_precision = 1`).
"""

from __future__ import annotations

import onnx_ir as ir

from .attention_parts import allowed_mask, is_custom_attention, read_custom_attention, replace_node, rotate

FLOAT = 1


def lower_standard(model: ir.Model) -> dict[str, int]:
    """Returns {"attention": n, "rotary": m}: nodes lowered, RotaryEmbedding pairs added."""
    graph = model.graph
    lowered = rotary = 0
    for node in list(graph):
        if not is_custom_attention(node):
            continue
        attn = read_custom_attention(node)
        tape = ir.tape.Tape()
        q, k = attn.inputs["query"], attn.inputs["key"]
        if attn.rope:
            q, k = rotate(tape, attn, q, attn.num_heads), rotate(tape, attn, k, attn.kv_num_heads)
            rotary += 1
        outputs = tape.op_multi_out(
            "Attention",
            [q, k, attn.inputs["value"], allowed_mask(tape, attn), attn.inputs["past_key"], attn.inputs["past_value"]],
            attributes={
                "q_num_heads": attn.num_heads,
                "kv_num_heads": attn.kv_num_heads,
                "scale": attn.scale,
                "softmax_precision": FLOAT,
            },
            num_outputs=3,
        )
        replace_node(graph, node, tape, outputs)
        lowered += 1
    return {"attention": lowered, "rotary": rotary}
