"""Pass: fold constant subgraphs (shape arithmetic, reshaped axes) into constants.

TensorRT's parser needs e.g. ReduceMean axes as build-time constants, and the
traced graph computes some of them with Reshape(Constant). onnxscript's folder
does this; its input size limit keeps it away from the weights, so no weight is
read (they stay lazy and stream at save time).
"""

from __future__ import annotations

import onnx_ir as ir
import onnxscript.optimizer

WEIGHT_SAFE_LIMIT = 1024  # elements: never read a tensor larger than this while folding


def fold_constants(model: ir.Model) -> dict[str, int]:
    before = len(model.graph)
    onnxscript.optimizer.fold_constants(
        model, onnx_shape_inference=False, input_size_limit=WEIGHT_SAFE_LIMIT, output_size_limit=WEIGHT_SAFE_LIMIT
    )
    return {"nodes_before": before, "nodes_after": len(model.graph)}
