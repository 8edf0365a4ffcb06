"""Pass: lower `exaone4::Attention` to onnxruntime's fused `com.microsoft.GroupQueryAttention`.

Rewrite, per layer:
- RoPE with opset-23 RotaryEmbedding before the op (`do_rotary = 0`). GQA's own
  rotary derives prompt positions from one start position for the whole batch,
  which is wrong for left-padded rows; RotaryEmbedding uses position_ids as given.
- `local_window_size = window` on sliding layers: GQA's window counts the query
  itself, the same meaning as EXAONE's (pinned by a test against the reference).
- Every row's cache is the full T = P + S slots (`seqlens_k = T - 1`); padding is
  masked by an additive `attention_bias`, so left padding works.
- `query_seqlens = S` for every row, which GQA needs for a chunk (S > 1) on top of
  a past in a batch.
"""

from __future__ import annotations

import onnx_ir as ir

from .attention_parts import CustomAttention, constant, lengths, lower_each_attention, padding_bias, rotate

INT32 = 6
MS_DOMAIN = "com.microsoft"
HEAD_DIM_MULTIPLE = 8  # onnxruntime's GroupQueryAttention kernels refuse any other head size at run time


def unsupported_reason(head_dim: int) -> str | None:
    """Why this pass's output would not run for `head_dim`, or None when it would.

    Checked before exporting, so a config GQA cannot serve is refused up front instead
    of giving an export that fails on its first inference.
    """
    if head_dim % HEAD_DIM_MULTIPLE:
        return (f"onnxruntime's GroupQueryAttention needs head_dim a multiple of {HEAD_DIM_MULTIPLE}, "
                f"this model has {head_dim}; use --target standard or canonical")
    return None


def int32(tape: ir.tape.Tape, value: ir.Value) -> ir.Value:
    return tape.op("Cast", [value], attributes={"to": INT32})


def _group_query_attention(tape: ir.tape.Tape, attn: CustomAttention) -> list[ir.Value]:
    q, k = attn.inputs["query"], attn.inputs["key"]
    if attn.rope:
        q, k = rotate(tape, attn, q, attn.num_heads), rotate(tape, attn, k, attn.kv_num_heads)
    seq, total, _ = lengths(tape, attn)
    batch = tape.op("Shape", [attn.inputs["attention_mask"]], attributes={"start": 0, "end": 1})
    seqlens_k = int32(tape, tape.op("Expand", [tape.op("Sub", [total, constant(tape, 1)]), batch]))
    query_seqlens = int32(tape, tape.op("Expand", [seq, batch]))
    inputs = [
        q, k, attn.inputs["value"], attn.inputs["past_key"], attn.inputs["past_value"],
        seqlens_k, int32(tape, total),
        None, None, None,  # cos_cache, sin_cache, position_ids: RoPE is applied above
        padding_bias(tape, attn),
        None, None, None, None, None,  # head_sink, k_scale, v_scale, q/k norm weights
        query_seqlens,
    ]
    return group_query_attention(tape, attn, inputs)


def group_query_attention(tape: ir.tape.Tape, attn: CustomAttention, inputs: list) -> list[ir.Value]:
    """The GroupQueryAttention node for `attn`'s heads, scale and window; RoPE already applied (do_rotary 0)."""
    attributes = {
        "num_heads": attn.num_heads,
        "kv_num_heads": attn.kv_num_heads,
        "scale": attn.scale,
        "local_window_size": attn.window if attn.window > 0 else -1,
        "do_rotary": 0,
    }
    return list(tape.op_multi_out("GroupQueryAttention", inputs, attributes=attributes, domain=MS_DOMAIN, num_outputs=3))


def lower_ort(model: ir.Model) -> dict[str, int]:
    """Returns {"group_query_attention": n, "rotary": m}."""
    lowered, rotary = lower_each_attention(model, _group_query_attention)
    if lowered:
        model.opset_imports[MS_DOMAIN] = 1
    return {"group_query_attention": lowered, "rotary": rotary}
