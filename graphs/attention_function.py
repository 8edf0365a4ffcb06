"""The reference body of the `exaone4::Attention` custom op, as an ONNX model-local function.

A canonical export carries this function, so any ONNX runtime can execute the
custom node with no extra library: the runtime inlines the body. A backend with a
faster implementation (a TensorRT plugin, GroupQueryAttention) replaces the node
instead. The contract is in docs/custom-op.md; in short:

    inputs   query [B, S, H*D], key [B, S, KV*D], value [B, S, KV*D],
             past_key [B, KV, P, D], past_value [B, KV, P, D],
             cos_table [max_pos, D/2], sin_table [max_pos, D/2] (activation dtype),
             position_ids int64 [B, S], attention_mask int64 [B, P+S]
    outputs  output [B, S, H*D], present_key [B, KV, P+S, D], present_value [B, KV, P+S, D]
    attrs    num_heads, kv_num_heads, head_dim, window (0: global), rope (0/1), scale

Query i of the chunk sits at cache index P + i and sees key j when j <= P + i,
attention_mask[b, j] == 1 and, if window > 0, j > P + i - window (window keys,
its own included). With rope = 1, query and key are rotated (rotate-half layout)
at position_ids before the key enters the cache.

The body is written in the ONNX text format so it reads like the math. It uses
opset-23 `RotaryEmbedding` and `Attention`; a layer without RoPE rotates by
cos = 1, sin = 0, which is an exact identity, so one body serves every layer.
"""

from __future__ import annotations

import onnx
import onnx.parser
import onnx_ir as ir

DOMAIN = "exaone4"
OP_TYPE = "Attention"
OPSET = 23
ATTRIBUTES = ("num_heads", "kv_num_heads", "head_dim", "window", "rope", "scale")
INPUTS = (
    "query",
    "key",
    "value",
    "past_key",
    "past_value",
    "cos_table",
    "sin_table",
    "position_ids",
    "attention_mask",
)
OUTPUTS = ("output", "present_key", "present_value")

_BODY = f"""
<domain: "{DOMAIN}", opset_import: ["" : {OPSET}]>
{OP_TYPE} <{", ".join(ATTRIBUTES)}>({", ".join(INPUTS)}) => ({", ".join(OUTPUTS)})
{{
    # rotary tables, or the identity rotation (cos 1, sin 0) on NoPE layers
    rope_i = Constant <value_int: int = @rope> ()
    rope_on = Cast <to = 9> (rope_i)
    one_f = Constant <value_float = 1.0> ()
    zero_f = Constant <value_float = 0.0> ()
    one = CastLike (one_f, cos_table)
    zero = CastLike (zero_f, sin_table)
    cos = Where (rope_on, cos_table, one)
    sin = Where (rope_on, sin_table, zero)
    q_rot = RotaryEmbedding <num_heads: int = @num_heads> (query, cos, sin, position_ids)
    k_rot = RotaryEmbedding <num_heads: int = @kv_num_heads> (key, cos, sin, position_ids)

    # cache indices: queries at P .. P+S-1, keys at 0 .. T-1 (T = P + S)
    s_1d = Shape <start = 1, end = 2> (query)
    t_1d = Shape <start = 1, end = 2> (attention_mask)
    s = Squeeze (s_1d)
    t = Squeeze (t_1d)
    p = Sub (t, s)
    zero_i = Constant <value_int = 0> ()
    one_i = Constant <value_int = 1> ()
    minus_one = Constant <value_int = -1> ()
    query_index_1d = Range (p, t, one_i)
    axis_1 = Constant <value_ints = [1]> ()
    query_index = Unsqueeze (query_index_1d, axis_1)
    key_index = Range (zero_i, t, one_i)

    # causal, and inside the window when there is one: [S, T]
    causal = LessOrEqual (key_index, query_index)
    window = Constant <value_int: int = @window> ()
    has_window = Greater (window, zero_i)
    window_start = Sub (query_index, window)
    lower = Where (has_window, window_start, minus_one)
    in_window = Greater (key_index, lower)
    allowed = And (causal, in_window)

    # padding: [B, 1, 1, T]; the full mask is [B, 1, S, T]
    not_pad = Cast <to = 9> (attention_mask)
    axes_12 = Constant <value_ints = [1, 2]> ()
    not_pad_4d = Unsqueeze (not_pad, axes_12)
    mask = And (allowed, not_pad_4d)

    output, present_key, present_value = Attention <q_num_heads: int = @num_heads, kv_num_heads: int = @kv_num_heads, scale: float = @scale, softmax_precision = 1> (q_rot, k_rot, value, mask, past_key, past_value)
}}
"""


def attention_function() -> onnx.FunctionProto:
    """The FunctionProto for `exaone4::Attention` (opset import "" = 23)."""
    return onnx.parser.parse_function(_BODY)


def add_attention_function(model: ir.Model) -> None:
    """Attach the reference body so runtimes without a native kernel can run the custom node."""
    model.functions[(DOMAIN, OP_TYPE, "")] = ir.serde.deserialize_function(attention_function())
    model.opset_imports[DOMAIN] = 1
