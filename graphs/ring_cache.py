"""A sliding layer's in-place KV cache as a ring of R slots (used by lower_ort_static.py).

A sliding layer with window W never reads a key older than W - 1 positions, so
its in-place buffer need not grow with the context: position p lives in slot
p mod R of a [B, KV, R, D] buffer that the caller binds as both past and present.
Per call of S new tokens (row b: n_b real ones, then padding; its first position
f_b = position_ids[b, 0] is how many it had cached before):

1. write: ScatterND puts the S new keys/values at slots (f_b + j) mod R. Bound to
   the same buffer, onnxruntime's ScatterND skips its copy, so this moves S slots;
   unbound (a plain session.run), the graph is still correct, with one copy.
2. read: opset-23 Attention over the whole ring, after the write. Slot r holds
   position P_r = E_b - ((E_b - r) mod R), E_b = f_b + S - 1 the last written one;
   query j (position f_b + j) sees slot r when 0 <= P_r <= f_b + j and
   P_r > f_b + j - W: causal, inside the window, written. Padding queries see slot
   0 only, so no softmax row is empty (their outputs are discarded).

This is exact when nothing a query needs was overwritten in the same call:
S <= R - W + 1 on top of a past, or S <= R for a first prompt (f_b = 0 for every
row). The caller sizes R accordingly (CacheLayout.ring_slots) and splits nothing:
decode steps (S = 1) need only R >= W. Padding writes land on slots whose
positions no later query can reach under the same bounds.

R is read from the bound buffer's shape, so a caller that binds longer buffers
(onnxruntime-genai binds max_length slots to every layer) gets the same results.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .attention_parts import CustomAttention, constant

ATTENTION_OPSET = 23  # Attention with q_num_heads / kv_num_heads (GQA) and a bool mask


def ring_attention(tape: ir.tape.Tape, attn: CustomAttention, q: ir.Value, k: ir.Value) -> list[ir.Value]:
    """[output [B, S, H*D], present_key, present_value] for a sliding layer; q, k already rotated."""
    past_key, past_value = attn.inputs["past_key"], attn.inputs["past_value"]
    first, seq, ring = _first_positions(tape, attn), _dim(tape, attn.inputs["position_ids"], 1), _dim(tape, past_key, 2)
    indices = _write_indices(tape, attn, first, seq, ring)
    present_key = tape.op("ScatterND", [past_key, indices, _heads_first(tape, attn, k, attn.kv_num_heads)])
    present_value = tape.op("ScatterND", [past_value, indices, _heads_first(tape, attn, attn.inputs["value"], attn.kv_num_heads)])
    attributes = {"q_num_heads": attn.num_heads, "kv_num_heads": attn.kv_num_heads, "scale": attn.scale,
                  "softmax_precision": 1}  # TensorProto.FLOAT
    mask = _ring_mask(tape, attn, first, seq, ring)
    out = tape.op("Attention", [_heads_first(tape, attn, q, attn.num_heads), present_key, present_value, mask], attributes=attributes)
    out = tape.op("Transpose", [out], attributes={"perm": [0, 2, 1, 3]})  # [B, H, S, D] -> [B, S, H, D]
    hidden = constant(tape, [0, 0, attn.num_heads * attn.head_dim])
    return [tape.op("Reshape", [out, hidden]), present_key, present_value]


def _dim(tape: ir.tape.Tape, value: ir.Value, axis: int) -> ir.Value:
    """value.shape[axis] as an int64 scalar."""
    return tape.op("Squeeze", [tape.op("Shape", [value], attributes={"start": axis, "end": axis + 1})])


def _first_positions(tape: ir.tape.Tape, attn: CustomAttention) -> ir.Value:
    """f_b = position_ids[b, 0]: positions already cached in row b, [B, 1]."""
    zero, one = constant(tape, [0]), constant(tape, [1])
    return tape.op("Slice", [attn.inputs["position_ids"], zero, one, one])


def _heads_first(tape: ir.tape.Tape, attn: CustomAttention, x: ir.Value, heads: int) -> ir.Value:
    """[B, S, heads*D] -> [B, heads, S, D]."""
    split = tape.op("Reshape", [x, constant(tape, [0, 0, heads, attn.head_dim])])  # [B, S, heads, D]
    return tape.op("Transpose", [split], attributes={"perm": [0, 2, 1, 3]})


def _write_indices(tape: ir.tape.Tape, attn: CustomAttention, first: ir.Value, seq: ir.Value, ring: ir.Value) -> ir.Value:
    """ScatterND indices [B, KV, S, 3]: (row, kv head, slot (f_b + j) mod R) for every new token j."""
    one, zero = constant(tape, np.int64(1)), constant(tape, np.int64(0))
    slots = tape.op("Mod", [tape.op("Add", [first, tape.op("Range", [zero, seq, one])]), ring])  # [B, S]
    batch = _dim(tape, attn.inputs["position_ids"], 0)
    rows = tape.op("Reshape", [tape.op("Range", [zero, batch, one]), constant(tape, [-1, 1, 1, 1])])  # [B, 1, 1, 1]
    heads = constant(tape, np.arange(attn.kv_num_heads, dtype=np.int64).reshape(1, -1, 1, 1))  # [1, KV, 1, 1]
    slots = tape.op("Unsqueeze", [slots, constant(tape, [1, 3])])  # [B, 1, S, 1]
    unsq = lambda v: tape.op("Unsqueeze", [v, constant(tape, [0])])  # noqa: E731
    shape = tape.op("Concat", [unsq(batch), constant(tape, [attn.kv_num_heads]), unsq(seq), constant(tape, [1])], attributes={"axis": 0})
    parts = [tape.op("Expand", [part, shape]) for part in (rows, heads, slots)]
    return tape.op("Concat", parts, attributes={"axis": 3})


def _ring_mask(tape: ir.tape.Tape, attn: CustomAttention, first: ir.Value, seq: ir.Value, ring: ir.Value) -> ir.Value:
    """bool [B, 1, S, R]: which ring slots each query reads (the module docstring's rule)."""
    one, zero = constant(tape, np.int64(1)), constant(tape, np.int64(0))
    last_written = tape.op("Add", [first, tape.op("Sub", [seq, one])])  # E_b [B, 1]
    slot = tape.op("Range", [zero, ring, one])  # [R]
    held = tape.op("Sub", [last_written, tape.op("Mod", [tape.op("Sub", [last_written, slot]), ring])])  # P_r [B, R]
    held = tape.op("Unsqueeze", [held, constant(tape, [1])])  # [B, 1, R]
    query = tape.op("Unsqueeze", [tape.op("Add", [first, tape.op("Range", [zero, seq, one])]), constant(tape, [2])])  # [B, S, 1]
    lower = tape.op("Sub", [query, constant(tape, np.int64(attn.window))])
    seen = tape.op("And", [tape.op("GreaterOrEqual", [held, zero]), tape.op("LessOrEqual", [held, query])])
    seen = tape.op("And", [seen, tape.op("Greater", [held, lower])])  # [B, S, R]
    real = tape.op("Unsqueeze", [_real_queries(tape, attn, first, seq), constant(tape, [2])])  # [B, S, 1]
    fallback = tape.op("Equal", [slot, zero])  # [R]: a padding query reads slot 0
    padding = tape.op("And", [tape.op("Not", [real]), fallback])  # (onnxruntime has no bool Where)
    mask = tape.op("Or", [tape.op("And", [real, seen]), padding])
    return tape.op("Unsqueeze", [mask, constant(tape, [1])])


def _real_queries(tape: ir.tape.Tape, attn: CustomAttention, first: ir.Value, seq: ir.Value) -> ir.Value:
    """bool [B, S]: j < n_b, where n_b = sum(attention_mask[b]) - f_b new tokens are real."""
    one, zero = constant(tape, np.int64(1)), constant(tape, np.int64(0))
    filled = tape.op("ReduceSum", [attn.inputs["attention_mask"], constant(tape, [1])], attributes={"keepdims": 1})  # [B, 1]
    return tape.op("Less", [tape.op("Range", [zero, seq, one]), tape.op("Sub", [filled, first])])
