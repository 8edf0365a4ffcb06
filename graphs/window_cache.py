"""Pass: a bounded KV cache for sliding-window layers (`--kv-cache window`).

A sliding layer with window W lets a query see itself and the W - 1 keys before
it, so after any step only the last W - 1 cache slots can ever be read again.
This pass keeps exactly those: per sliding `exaone4::Attention` node it

- trims `present_key` / `present_value` to their last W - 1 slots (all of them
  while the cache is shorter), and
- feeds the node the last `P_l + S` columns of `attention_mask`, where P_l is
  that layer's (bounded) past length, so the node's own contract holds: query i
  sits at cache index P_l + i, and the window test `j > P_l + i - W` compares
  slot indexes of the same contiguous tail as before.

Global layers keep every position. The graph-level `attention_mask` stays the
full `past_sequence + sequence` columns, so a caller's bookkeeping is the same
for both cache kinds: feed each present back as the next past, append to the mask.
For the 32B layout (3 sliding layers to 1 global, W = 4096) the cache at 32K
context shrinks 2.9x, and towards 4x as the context grows.

The pass runs on `exaone4::Attention` nodes, before any lowering, so every target
(ort, standard, trt) inherits the bounded cache without knowing about it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .attention_parts import constant, is_custom_attention, read_custom_attention

WINDOW_PAST = "past_window_sequence"
WINDOW_PRESENT = "window_sequence"
_MASK_INPUT = 8  # attention_mask, last input of exaone4::Attention
_INT64_MAX = np.iinfo(np.int64).max


def bound_window_cache(model: ir.Model) -> dict[str, int]:
    """Returns {"bounded_layers": n}: the sliding layers whose cache is now at most W - 1 slots."""
    graph = model.graph
    bounded = 0
    for node in list(graph):
        if not is_custom_attention(node):
            continue
        attn = read_custom_attention(node)
        if attn.window <= 0 or _already_bounded(node):
            continue
        _slice_mask(graph, node, attn)
        for index in (1, 2):  # present_key, present_value
            _keep_last_slots(graph, node, node.outputs[index], attn.window - 1)
        _rename_past_dim(attn.inputs["past_key"])
        _rename_past_dim(attn.inputs["past_value"])
        bounded += 1
    return {"bounded_layers": bounded}


def _already_bounded(node: ir.Node) -> bool:
    """True when the mask input is already a slice this pass made (a canonical export made with it)."""
    producer = node.inputs[_MASK_INPUT].producer()
    return producer is not None and producer.op_type == "Slice"


def _slice_mask(graph: ir.Graph, node: ir.Node, attn) -> None:
    """attention_mask [B, T] -> its last P_l + S columns [B, P_l + S]."""
    tape = ir.tape.Tape()
    past = tape.op("Shape", [attn.inputs["past_key"]], attributes={"start": 2, "end": 3})  # [1]: P_l
    seq = tape.op("Shape", [attn.inputs["position_ids"]], attributes={"start": 1, "end": 2})  # [1]: S
    start = tape.op("Neg", [tape.op("Add", [past, seq])])
    mask = tape.op("Slice", [attn.inputs["attention_mask"], start, constant(tape, [_INT64_MAX]), constant(tape, [1])])
    graph.insert_before(node, list(tape.nodes))
    node.replace_input_with(_MASK_INPUT, mask)


def _keep_last_slots(graph: ir.Graph, node: ir.Node, present: ir.Value, keep: int) -> None:
    """Route every use of `present` [B, KV, T, D] (graph output included) to its last `keep` slots."""
    tape = ir.tape.Tape()
    start = [-keep] if keep > 0 else [_INT64_MAX]  # keep 0 (W = 1): an empty slice
    trimmed = tape.op("Slice", [present, constant(tape, start), constant(tape, [_INT64_MAX]), constant(tape, [2])])
    graph.insert_after(node, list(tape.nodes))
    for user, index in list(present.uses()):
        if user is not trimmed.producer():
            user.replace_input_with(index, trimmed)
    if present.shape is not None:
        batch, heads, _, dim = present.shape
        trimmed.shape = ir.Shape([batch, heads, WINDOW_PRESENT, dim])
    trimmed.dtype = present.dtype
    outputs = graph.outputs
    if present in outputs:
        name = present.name
        present.name = f"{name}.full"
        trimmed.name = name
        outputs[outputs.index(present)] = trimmed


def _rename_past_dim(past: ir.Value) -> None:
    """Graph inputs of a bounded layer say so in their shape: [batch, kv_heads, past_window_sequence, D]."""
    if past.is_graph_input() and past.shape is not None:
        batch, heads, _, dim = past.shape
        past.shape = ir.Shape([batch, heads, WINDOW_PAST, dim])
