"""Pass: compute logits for the last position only (`--logits last`).

Generation needs the next-token distribution, i.e. the last position's logits.
The full `[B, S, vocab]` output costs a `[S, hidden] x [hidden, vocab]` matmul in
prefill: for EXAONE 4.0 1.2B (vocab 102400) at a 1024-token prompt that is 0.43
TFLOP, a sixth of the whole prefill, and 420 MB of output that is thrown away.
transformers' `generate` skips it the same way (`logits_to_keep=1`).

The pass slices the lm_head matmul's input to its last position:
`logits [B, S, vocab]` becomes `logits [B, 1, vocab]`. Every other output is
unchanged. With left padding a row's last position is always a real token, so
the slice is right for every row.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..exporter.contract import ATTENTION_MASK, LOGITS
from .attention_parts import constant

_PASS_THROUGH = ("Cast", "Identity")


def keep_last_logits(model: ir.Model) -> dict[str, int]:
    """Returns {"sliced": 1} once the lm_head reads only the last position; {"sliced": 0} if it already did."""
    return _read_one_position(model, _last_position)


def keep_last_logits_per_row(model: ir.Model) -> dict[str, int]:
    """The same for right-aligned rows (an in-place cache, lower_ort_static.py): each row's own last token.

    A prefill of rows of different lengths pads them on the right, so row b's last
    token is at min(sum(attention_mask[b]) - 1, S - 1): its token count minus one
    from an empty past, the one new position (S = 1) in decode.
    """
    return _read_one_position(model, _last_filled_position)


def _read_one_position(model: ir.Model, pick) -> dict[str, int]:
    logits = next((v for v in model.graph.outputs if v.name == LOGITS), None)
    if logits is None:
        raise ValueError(f"the graph has no {LOGITS!r} output")
    lm_head = _lm_head_matmul(logits)
    hidden = lm_head.inputs[0]
    producer = hidden.producer()
    if producer is not None and producer.op_type in ("Slice", "GatherElements"):
        return {"sliced": 0}
    tape = ir.tape.Tape()
    last = pick(tape, model, hidden)
    model.graph.insert_before(lm_head, list(tape.nodes))
    lm_head.replace_input_with(0, last)  # [B, S, hidden] -> [B, 1, hidden]
    if logits.shape is not None:
        batch, _, vocab = logits.shape
        logits.shape = ir.Shape([batch, 1, vocab])
    return {"sliced": 1}


def _last_position(tape: ir.tape.Tape, model: ir.Model, hidden: ir.Value) -> ir.Value:
    return tape.op("Slice", [hidden, constant(tape, [-1]), constant(tape, [np.iinfo(np.int64).max]), constant(tape, [1])])


def _last_filled_position(tape: ir.tape.Tape, model: ir.Model, hidden: ir.Value) -> ir.Value:
    mask = next((v for v in model.graph.inputs if v.name == ATTENTION_MASK), None)
    if mask is None:
        raise ValueError(f"the graph has no {ATTENTION_MASK!r} input")
    filled = tape.op("ReduceSum", [mask, constant(tape, [1])], attributes={"keepdims": 1})  # [B, 1]
    seq = tape.op("Shape", [hidden], attributes={"start": 1, "end": 2})  # [1]: S
    index = tape.op("Min", [tape.op("Sub", [filled, constant(tape, [1])]), tape.op("Sub", [seq, constant(tape, [1])])])
    width = tape.op("Shape", [hidden], attributes={"start": 2, "end": 3})  # [1]: hidden size
    batch = tape.op("Shape", [hidden], attributes={"start": 0, "end": 1})
    shape = tape.op("Concat", [batch, constant(tape, [1]), width], attributes={"axis": 0})
    index = tape.op("Expand", [tape.op("Unsqueeze", [index, constant(tape, [2])]), shape])  # [B, 1, hidden]
    return tape.op("GatherElements", [hidden, index], attributes={"axis": 1})  # [B, 1, hidden]


def _lm_head_matmul(logits: ir.Value) -> ir.Node:
    """The MatMul that makes the logits, walking back through casts."""
    node = logits.producer()
    while node is not None and node.op_type in _PASS_THROUGH:
        node = node.inputs[0].producer()
    if node is None or node.op_type not in ("MatMul", "Gemm"):
        raise ValueError(f"{LOGITS!r} is not made by a MatMul (found {node.op_type if node else 'a graph input'})")
    return node
