"""Pass: remove what no output needs and merge repeated subexpressions.

Uses onnx_ir's own passes (no weight data is read): unused nodes, functions and
opset imports go; identical nodes on identical inputs (the mask and position
arithmetic each layer repeats) are computed once.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common


def cleanup(model: ir.Model) -> dict[str, int]:
    """Dead-code elimination and CSE; returns node counts before and after."""
    before = len(model.graph)
    for cls in (
        common.IdentityEliminationPass,
        common.CommonSubexpressionEliminationPass,
        common.RemoveUnusedNodesPass,
        common.RemoveUnusedFunctionsPass,
        common.RemoveUnusedOpsetsPass,
    ):
        cls()(model)
    after = len(model.graph)
    return {"nodes_before": before, "nodes_after": after, "removed": before - after}
