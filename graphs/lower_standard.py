"""Pass: lower `exaone4::Attention` to standard ONNX (opset 23) so any runtime can run it.

Rewrite, per layer: RotaryEmbedding on q and k when the layer uses RoPE; a bool
mask [B, 1, S, T] (causal, window, padding); opset-23 `Attention` with GQA
heads, past/present KV and softmax in fp32 (`softmax_precision = 1`).
"""

from __future__ import annotations

import onnx_ir as ir

from .attention_parts import lower_each_attention, standard_attention


def lower_standard(model: ir.Model) -> dict[str, int]:
    """Returns {"attention": n, "rotary": m}: nodes lowered, RotaryEmbedding pairs added."""
    lowered, rotary = lower_each_attention(model, standard_attention)
    return {"attention": lowered, "rotary": rotary}
