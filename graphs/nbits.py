"""One weight matrix through onnxruntime's own MatMulNBits quantizer: the packing the nbits passes share.

    packed = pack_weight(w_kn, bits=4, block_size=32, symmetric=True, accuracy_level=4)

`onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer` rewrites a whole
ModelProto held in memory. An export's graph can be several GB, so each weight goes through
it alone, as the one-node model `MatMul(A, W)`, and the tensors it returns (packed weight,
scales, zero points) are what graphs/matmul_nbits.py and graphs/tied_embedding_nbits.py splice
into our graph: one weight in memory at a time, and no packing of our own.

The quantizer's layout (com.microsoft MatMulNBits, W given as [K, N] = [in, out], which is
how our exports store Linear weights, `*.weight_t`): blocks of `block_size` consecutive input
rows per output column; `packed` is uint8 [N, K / block_size, block_size * bits / 8], values
packed low bits first; `scales` [N, K / block_size] in W's dtype; `zero_points` uint8, packed the
same way along the block axis, absent for symmetric quantization (the kernel then takes
2^(bits-1)). The quantizer pads K up to a block; we refuse such weights instead (the caller
names --block-size), so every block holds real weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class PackedWeight:
    """A [K, N] weight as MatMulNBits takes it."""

    k: int
    n: int
    bits: int
    block_size: int
    accuracy_level: int
    packed: np.ndarray  # uint8 [N, K / block_size, block_size * bits / 8]
    scales: np.ndarray  # [N, K / block_size], the weight's float dtype
    zero_points: np.ndarray | None  # uint8, None when symmetric

    @property
    def k_blocks(self) -> int:
        return self.k // self.block_size

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.packed, self.scales, self.zero_points) if a is not None)

    def attributes(self) -> dict[str, int]:
        """MatMulNBits' attributes; accuracy_level 0 (fp32 compute) is the op's default and left out."""
        attributes = {"K": self.k, "N": self.n, "bits": self.bits, "block_size": self.block_size}
        if self.accuracy_level:
            attributes["accuracy_level"] = self.accuracy_level
        return attributes


def pack_weight(weight: np.ndarray, bits: int, block_size: int, symmetric: bool, accuracy_level: int) -> PackedWeight:
    """Quantize `weight` ([K, N], float32 or float16) block-wise with onnxruntime's RTN quantizer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    if k % block_size:
        raise ValueError(f"block size {block_size} does not divide K = {k}")
    elem = TensorProto.FLOAT16 if weight.dtype == np.float16 else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"], name="matmul")], "one_weight",
        [helper.make_tensor_value_info("A", elem, [None, k])], [helper.make_tensor_value_info("Y", elem, [None, n])],
        [numpy_helper.from_array(np.ascontiguousarray(weight), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    quantizer_module = _quantizer_module()
    config = quantizer_module.DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=symmetric, accuracy_level=accuracy_level or None, bits=bits)
    quantizer = quantizer_module.MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    result: onnx.GraphProto = quantizer.model.model.graph
    (node,) = result.node
    if node.op_type != "MatMulNBits":
        raise RuntimeError(f"onnxruntime's quantizer left a {node.op_type}, expected MatMulNBits")
    arrays = {t.name: numpy_helper.to_array(t) for t in result.initializer}
    inputs = list(node.input) + [""] * (4 - len(node.input))
    return PackedWeight(
        k=k, n=n, bits=bits, block_size=block_size, accuracy_level=accuracy_level,
        packed=arrays[inputs[1]], scales=arrays[inputs[2]].reshape(n, k // block_size),
        zero_points=arrays[inputs[3]] if inputs[3] else None,
    )


def _quantizer_module():
    """onnxruntime's matmul_nbits_quantizer, its per-weight INFO lines silenced."""
    module = quiet_import("onnxruntime.quantization.matmul_nbits_quantizer")
    module.logger.setLevel(logging.WARNING)
    return module


def quiet_import(name: str):
    """Import a module of onnxruntime.quantization without its side effect on logging.

    matmul_nbits_quantizer calls `logging.basicConfig(level=INFO)` when imported, which would
    install a root handler and print every library's INFO lines on our command line's stderr;
    the root logger's handlers and level are put back as they were.
    """
    import importlib

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return importlib.import_module(name)
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)

def add_initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """Register `array` as an initializer called `name`; returns its value."""
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value
