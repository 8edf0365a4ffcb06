"""Pass: FP8 (E4M3) explicit quantization of the projection matmuls, TensorRT style.

Pattern: MatMul(activation, W) where W is an initializer named in `weight_amax`
(every q/k/v/o and gate/up/down projection; the lm_head is not named, so it
stays in higher precision, as do norms and the attention softmax, which are not
MatMuls on weights). Rewrite:

    MatMul(DQ(Q(activation, s_a)), DQ(Q(W, s_w)))    s = amax / 448

with a per-tensor activation scale and per-output-channel weight scales
(W is [in, out]: one scale per column, axis 1) from calibration, in the graph's
float dtype, and FLOAT8E4M3FN zero points. Per-tensor weight scales cost the
bundled model 10 points of top-1 agreement; per-channel ones are what
TensorRT's FP8 GEMMs take anyway. TensorRT fuses the pattern into FP8 GEMMs; onnxruntime
runs it as written (quantize, dequantize, matmul), so the accuracy of fp8 can be
measured on a CPU.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as ir

E4M3_MAX = 448.0


def _fake_quantize(tape: ir.tape.Tape, x: ir.Value, amax, dtype: ir.DataType) -> ir.Value:
    """Q then DQ of x; amax is a float (per tensor) or a list (per channel along axis 1)."""
    numpy_dtype = np.float16 if dtype == ir.DataType.FLOAT16 else np.float32
    amax = np.maximum(np.asarray(amax, np.float64), 1e-12)
    scale = tape.op("Constant", [], attributes={"value": ir.tensor((amax / E4M3_MAX).astype(numpy_dtype))})
    zero = tape.op("Constant", [], attributes={"value": ir.tensor(np.zeros(amax.shape, dtype=ml_dtypes.float8_e4m3fn))})
    axis = {"axis": 1} if amax.ndim == 1 else {}
    quantized = tape.op("QuantizeLinear", [x, scale, zero], attributes=axis)
    return tape.op("DequantizeLinear", [quantized, scale, zero], attributes=axis)


def quantize_fp8(model: ir.Model, activation_amax: dict[str, float], weight_amax: dict[str, list[float]]) -> dict[str, int]:
    """Insert Q/DQ pairs; returns {"matmuls": quantized, "kept_high_precision": other MatMuls}."""
    graph = model.graph
    quantized = kept = 0
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain != "":
            continue
        weight = node.inputs[1]
        if weight is None or not weight.is_initializer() or weight.name not in weight_amax:
            kept += 1
            continue
        if weight.name not in activation_amax:
            raise ValueError(f"no activation range for {weight.name!r}: calibration and graph disagree")
        dtype = weight.dtype
        tape = ir.tape.Tape()
        activation = _fake_quantize(tape, node.inputs[0], activation_amax[weight.name], dtype)
        quantized_weight = _fake_quantize(tape, weight, weight_amax[weight.name], dtype)
        graph.insert_before(node, tape.nodes)
        node.replace_input_with(0, activation)
        node.replace_input_with(1, quantized_weight)
        quantized += 1
    return {"matmuls": quantized, "kept_high_precision": kept}
