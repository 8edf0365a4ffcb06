"""Pass: lower `exaone4::Attention` to GroupQueryAttention over an in-place KV cache (`--kv-cache static`).

The ort lowering (lower_ort.py) keeps the IO contract's growing cache: present =
concat(past, new), a copy of the whole cache every step. Here each layer's past
and present are one preallocated buffer [B, KV, max_context, D] that the caller
binds to both (onnxruntime's `past_present_share_buffer`): GroupQueryAttention
writes the new keys/values in place at each row's own length and reads only the
filled slots, so a decode step costs what it reads, not the whole buffer twice.

Rows are right-aligned: row b's tokens sit in slots [0, n_b) and its
attention_mask [B, T] is 1 on its first n_b columns, so rows of different lengths
share a batch with no padding inside the cache. Per layer:
- `seqlens_k = sum(attention_mask) - 1` per row, `total_sequence_length = T`;
- RoPE with opset-23 RotaryEmbedding at position_ids, as in lower_ort.py;
- no attention bias: GroupQueryAttention masks past each row's length itself.
Sliding layers keep a ring of R slots instead (ring_cache.py: position p in slot
p mod R, R about the window), so a hybrid model's cache grows with its global
layers only. Graph past/present dims are renamed `max_context` on global layers
(the buffer length the caller allocates, recorded in the manifest) and
`ring_slots` on sliding ones.
"""

from __future__ import annotations

import onnx_ir as ir

from ..exporter.contract import PAST_PREFIX, PRESENT_PREFIX
from .attention_parts import CustomAttention, constant, is_custom_attention, lengths, lower_each_attention, read_custom_attention, rotate
from .lower_ort import MS_DOMAIN, group_query_attention, int32
from .ring_cache import ring_attention

MAX_CONTEXT = "max_context"  # symbolic length of the global layers' in-place buffers
RING_SLOTS = "ring_slots"  # symbolic length of the sliding layers' rings


def _in_place_attention(tape: ir.tape.Tape, attn: CustomAttention) -> list[ir.Value]:
    q, k = attn.inputs["query"], attn.inputs["key"]
    if attn.rope:
        q, k = rotate(tape, attn, q, attn.num_heads), rotate(tape, attn, k, attn.kv_num_heads)
    if attn.window > 0:
        return ring_attention(tape, attn, q, k)
    _, total, _ = lengths(tape, attn)
    filled = tape.op("ReduceSum", [attn.inputs["attention_mask"], constant(tape, [1])], attributes={"keepdims": 0})  # [B]
    seqlens_k = int32(tape, tape.op("Sub", [filled, constant(tape, 1)]))
    inputs = [q, k, attn.inputs["value"], attn.inputs["past_key"], attn.inputs["past_value"], seqlens_k, int32(tape, total)]
    return group_query_attention(tape, attn, inputs)


def _rename_cache_dims(model: ir.Model, rings: set[str]) -> int:
    """past/present [B, KV, *, D] -> [B, KV, max_context | ring_slots, D]; returns how many values were renamed."""
    renamed = 0
    for value in (*model.graph.inputs, *model.graph.outputs):
        if value.name and value.name.startswith((PAST_PREFIX, PRESENT_PREFIX)) and value.shape is not None:
            batch, heads, _, dim = value.shape
            value.shape = ir.Shape([batch, heads, RING_SLOTS if value.name in rings else MAX_CONTEXT, dim])
            renamed += 1
    return renamed


def _ring_cache_names(model: ir.Model) -> set[str]:
    """Graph past/present names of the sliding layers (their custom nodes' cache inputs and outputs)."""
    names = set()
    for node in model.graph:
        if is_custom_attention(node) and read_custom_attention(node).window > 0:
            names |= {v.name for v in (*node.inputs, *node.outputs) if v is not None and v.name}
    return names


def lower_ort_static(model: ir.Model) -> dict[str, int]:
    """Returns {"group_query_attention": g, "ring_caches": r, "rotary": m, "in_place_caches": 2(g + r)}."""
    rings = _ring_cache_names(model)
    ring_layers = sum(1 for node in model.graph if is_custom_attention(node) and read_custom_attention(node).window > 0)
    lowered, rotary = lower_each_attention(model, _in_place_attention)
    if lowered > ring_layers:
        model.opset_imports[MS_DOMAIN] = 1
    return {"group_query_attention": lowered - ring_layers, "ring_caches": ring_layers, "rotary": rotary,
            "in_place_caches": _rename_cache_dims(model, rings)}
