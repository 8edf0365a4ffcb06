"""Pass: store weights pre-transposed instead of transposing them in the graph.

Pattern: Transpose(initializer) where the Transpose is the initializer's only user
(the `x @ W.T` of every Linear layer as traced). Rewrite: a new initializer that
holds W transposed, computed lazily when the model is saved, so weights are
still streamed one at a time. An initializer with other users (a tied embedding
also read by Gather) is left alone: transposing it would store it twice.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def _transposed(tensor: ir.TensorProtocol, perm: list[int]):
    def load() -> ir.Tensor:
        return ir.tensor(np.ascontiguousarray(tensor.numpy().transpose(perm)), name=tensor.name)

    return load


def fold_weight_transposes(model: ir.Model) -> dict[str, int]:
    """Rewrite every foldable weight Transpose; returns {"folded": n, "skipped_shared": m}."""
    graph = model.graph
    folded = skipped = 0
    for node in list(graph):
        if node.op_type != "Transpose" or node.domain != "":
            continue
        source = node.inputs[0]
        if source is None or not source.is_initializer() or source.const_value is None:
            continue
        if len(source.uses()) != 1:
            skipped += 1
            continue
        rank = len(source.shape)
        perm = list(node.attributes["perm"].as_ints()) if "perm" in node.attributes else list(range(rank))[::-1]
        name = source.name
        shape = ir.Shape([source.shape[i] for i in perm])
        lazy = ir.LazyTensor(_transposed(source.const_value, perm), dtype=source.dtype, shape=shape, name=name)
        graph.initializers.pop(name)
        replacement = ir.Value(name=name, shape=shape, type=ir.TensorType(source.dtype), const_value=lazy)
        graph.register_initializer(replacement)
        ir.convenience.replace_all_uses_with(node.outputs[0], replacement)
        graph.remove(node, safe=True)
        folded += 1
    return {"folded": folded, "skipped_shared": skipped}
