"""Pass: lower `exaone4::Attention` to standard ONNX (opset 23) so any runtime can run it.

Rewrite, per layer: RotaryEmbedding on q and k when the layer uses RoPE; a bool
mask [B, 1, S, T] (causal, window, padding); opset-23 `Attention` with GQA
heads, past/present KV and softmax in fp32 (`softmax_precision = 1`).
"""

from __future__ import annotations

import onnx_ir as ir

from .attention_parts import is_custom_attention, read_custom_attention, replace_node, standard_attention


def lower_standard(model: ir.Model) -> dict[str, int]:
    """Returns {"attention": n, "rotary": m}: nodes lowered, RotaryEmbedding pairs added."""
    graph = model.graph
    lowered = rotary = 0
    for node in list(graph):
        if not is_custom_attention(node):
            continue
        tape = ir.tape.Tape()
        outputs, rotated = standard_attention(tape, read_custom_attention(node), softmax_fp32=True)
        replace_node(graph, node, tape, outputs)
        lowered += 1
        rotary += rotated
    return {"attention": lowered, "rotary": rotary}
