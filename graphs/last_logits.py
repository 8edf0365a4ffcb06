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

from ..exporter.contract import LOGITS
from .attention_parts import constant

_PASS_THROUGH = ("Cast", "Identity")


def keep_last_logits(model: ir.Model) -> dict[str, int]:
    """Returns {"sliced": 1} once the lm_head reads only the last position; {"sliced": 0} if it already did."""
    logits = next((v for v in model.graph.outputs if v.name == LOGITS), None)
    if logits is None:
        raise ValueError(f"the graph has no {LOGITS!r} output")
    lm_head = _lm_head_matmul(logits)
    hidden = lm_head.inputs[0]
    producer = hidden.producer()
    if producer is not None and producer.op_type == "Slice":
        return {"sliced": 0}
    tape = ir.tape.Tape()
    last = tape.op("Slice", [hidden, constant(tape, [-1]), constant(tape, [np.iinfo(np.int64).max]), constant(tape, [1])])
    model.graph.insert_before(lm_head, list(tape.nodes))
    lm_head.replace_input_with(0, last)  # [B, S, hidden] -> [B, 1, hidden]
    if logits.shape is not None:
        batch, _, vocab = logits.shape
        logits.shape = ir.Shape([batch, 1, vocab])
    return {"sliced": 1}


def _lm_head_matmul(logits: ir.Value) -> ir.Node:
    """The MatMul that makes the logits, walking back through casts."""
    node = logits.producer()
    while node is not None and node.op_type in _PASS_THROUGH:
        node = node.inputs[0].producer()
    if node is None or node.op_type not in ("MatMul", "Gemm"):
        raise ValueError(f"{LOGITS!r} is not made by a MatMul (found {node.op_type if node else 'a graph input'})")
    return node
