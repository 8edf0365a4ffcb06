"""The int8 / int4 weight passes on one node each (graphs/matmul_nbits.py, graphs/tied_embedding_nbits.py).

Each test builds the smallest graph holding the pattern, runs the pass, runs the result in
onnxruntime and compares with the float graph, and with the dequantized weights read back
from the packed tensors (what onnxruntime computes must be the weights we stored).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

from exaone4.graphs.matmul_nbits import quantize_matmuls_nbits
from exaone4.graphs.nbits import PackedWeight, pack_weight
from exaone4.graphs.tied_embedding_nbits import quantize_tied_embedding

RNG = np.random.default_rng(0)
FLOAT = ir.DataType.FLOAT


def dequantize(packed: PackedWeight) -> np.ndarray:
    """The [K, N] weight MatMulNBits computes with: (code - zero point) * scale, blocks along K."""
    codes = packed.packed.reshape(packed.n, -1)
    if packed.bits == 4:
        codes = np.stack([codes & 0x0F, codes >> 4], axis=-1).reshape(packed.n, -1)
    codes = codes.reshape(packed.n, packed.k_blocks, packed.block_size).astype(np.float64)
    if packed.zero_points is None:
        zero = np.full((packed.n, packed.k_blocks), 2 ** (packed.bits - 1), np.float64)
    elif packed.bits == 4:
        zero = np.stack([packed.zero_points & 0x0F, packed.zero_points >> 4], axis=-1).reshape(packed.n, -1)[:, : packed.k_blocks]
    else:
        zero = packed.zero_points.reshape(packed.n, packed.k_blocks)
    return ((codes - zero[..., None]) * packed.scales[..., None]).reshape(packed.n, packed.k).T


def run(model: ir.Model, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def initializer(name: str, array: np.ndarray) -> ir.Value:
    return ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                    const_value=ir.tensor(array, name=name))


def one_matmul(weight: np.ndarray) -> ir.Model:
    """y = MatMul(x, W), x [2, 3, K], W an initializer [K, N]."""
    k, n = weight.shape
    x = ir.Value(name="x", shape=ir.Shape([2, 3, k]), type=ir.TensorType(FLOAT))
    w = initializer("proj.weight_t", weight)
    node = ir.Node("", "MatMul", [x, w], name="proj")
    node.outputs[0].name = "y"
    graph = ir.Graph([x], node.outputs, nodes=[node], initializers=[w], opset_imports={"": 23})
    return ir.Model(graph, ir_version=10)


@pytest.mark.parametrize("bits, bound", [(8, 0.01), (4, 0.15)])
@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_matmul_becomes_matmul_nbits_that_computes_with_the_stored_weights(bits, bound, symmetric):
    weight = RNG.standard_normal((64, 48)).astype(np.float32)
    x = RNG.standard_normal((2, 3, 64)).astype(np.float32)
    model = one_matmul(weight)
    counts = quantize_matmuls_nbits(model, bits, 32, symmetric, accuracy_level=0)
    assert counts["matmuls"] == 1 and counts["bytes_before"] == weight.nbytes and counts["bytes_after"] < weight.nbytes * bits / 32 * 1.3
    (node,) = model.graph
    assert (node.domain, node.op_type) == ("com.microsoft", "MatMulNBits") and node.outputs[0].name == "y"
    assert {a.name: a.value for a in node.attributes.values()} == {"K": 64, "N": 48, "bits": bits, "block_size": 32}
    assert "proj.weight_t" not in model.graph.initializers  # the float weight is gone
    (got,) = run(model, {"x": x})
    packed = pack_weight(weight, bits, 32, symmetric, 0)
    np.testing.assert_allclose(got, x @ dequantize(packed), rtol=0, atol=1e-4)  # onnxruntime computes with what we stored
    assert np.abs(got - x @ weight).max() / np.abs(x @ weight).max() < bound


def test_accuracy_level_is_written_and_replacement_weights_are_packed():
    weight = RNG.standard_normal((32, 16)).astype(np.float32)
    model = one_matmul(weight)
    quantize_matmuls_nbits(model, 8, 32, False, accuracy_level=4, weights={"proj.weight_t": np.zeros_like(weight)})
    (node,) = model.graph
    assert node.attributes["accuracy_level"].value == 4
    (got,) = run(model, {"x": np.ones((2, 3, 32), np.float32)})
    assert np.abs(got).max() == 0  # the replacement (zeros), not the stored weight, was packed


def test_matmul_on_a_computed_weight_is_left_alone():
    a = ir.Value(name="a", shape=ir.Shape([2, 32]), type=ir.TensorType(FLOAT))
    b = ir.Value(name="b", shape=ir.Shape([32, 4]), type=ir.TensorType(FLOAT))
    node = ir.Node("", "MatMul", [a, b], name="attention_like")
    model = ir.Model(ir.Graph([a, b], node.outputs, nodes=[node], opset_imports={"": 23}), ir_version=10)
    assert quantize_matmuls_nbits(model, 4, 32, False, 0)["kept_float"] == 1
    assert [n.op_type for n in model.graph] == ["MatMul"]


def tied_model(table: np.ndarray) -> ir.Model:
    """embedding = Gather(E, ids); logits = MatMul(h, Transpose(E)): a tied export's two uses of E [V, H]."""
    vocab, hidden = table.shape
    ids = ir.Value(name="input_ids", shape=ir.Shape([1, 5]), type=ir.TensorType(ir.DataType.INT64))
    h = ir.Value(name="h", shape=ir.Shape([1, 5, hidden]), type=ir.TensorType(FLOAT))
    e = initializer("lm_head.weight", table)
    gather = ir.Node("", "Gather", [e, ids], [ir.AttrInt64("axis", 0)], name="embedding")
    gather.outputs[0].name = "embedding"
    transpose = ir.Node("", "Transpose", [e], [ir.AttrInt64s("perm", [1, 0])], name="transpose")
    matmul = ir.Node("", "MatMul", [h, transpose.outputs[0]], name="lm_head")
    matmul.outputs[0].name = "logits"
    graph = ir.Graph([ids, h], [gather.outputs[0], matmul.outputs[0]], nodes=[gather, transpose, matmul], initializers=[e],
                     opset_imports={"": 23})
    return ir.Model(graph, ir_version=10)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_tied_embedding_and_lm_head_share_one_packed_tensor(bits, symmetric):
    table = (RNG.standard_normal((96, 64)) + 0.3).astype(np.float32)  # offset: asymmetric zero points matter
    ids = np.array([[0, 5, 95, 5, 17]], np.int64)
    h = RNG.standard_normal((1, 5, 64)).astype(np.float32)
    model = tied_model(table)
    counts = quantize_tied_embedding(model, bits, 32, symmetric, accuracy_level=0)
    assert counts["tied"] == 1 and counts["bytes_before"] == table.nbytes
    ops = {(n.domain, n.op_type): n for n in model.graph}
    lookup, head = ops["com.microsoft", "GatherBlockQuantized"], ops["com.microsoft", "MatMulNBits"]
    assert lookup.inputs[0] is head.inputs[1]  # one initializer, read by both
    assert ("", "Transpose") not in ops and "lm_head.weight" not in model.graph.initializers
    packed_bytes = head.inputs[1].const_value.nbytes
    assert counts["bytes_if_stored_twice"] > counts["bytes_after"] >= packed_bytes
    embedding, logits = run(model, {"input_ids": ids, "h": h})
    weight = dequantize(pack_weight(np.ascontiguousarray(table.T), bits, 32, symmetric, 0))  # [H, V]
    np.testing.assert_allclose(embedding, weight.T[ids], rtol=0, atol=1e-6)  # the lookup reads the lm_head's weights
    np.testing.assert_allclose(logits, h @ weight, rtol=0, atol=1e-4)
    assert np.abs(embedding - table[ids]).max() < (0.02 if bits == 8 else 0.4)


def test_untied_model_is_left_to_the_matmul_pass():
    model = one_matmul(RNG.standard_normal((32, 8)).astype(np.float32))
    assert quantize_tied_embedding(model, 4, 32, False, 0) == {"tied": 0}
    assert [n.op_type for n in model.graph] == ["MatMul"]
