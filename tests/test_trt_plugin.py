"""The TensorRT attention plugin's math (exporter/trt/plugin.py) against the custom op's ONNX reference body.

On a GPU the plugin's `enqueue` runs exactly `attention_math` on TensorRT's buffers;
here the same function runs on CPU tensors and is compared with onnxruntime
executing the `exaone4::Attention` function body, so a wrong field mapping
(window, rope, scale, head counts) fails here. Engine builds with the plugin are
in test_tensorrt.py.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from exaone4.exporter.trt.plugin import attention_math
from exaone4.graphs.attention_function import DOMAIN, INPUTS, OP_TYPE, OPSET, OUTPUTS, attention_function

HEADS, KV, D, MAX_POS = 4, 2, 8, 64


def one_node_model(fields: dict) -> bytes:
    """A graph holding one exaone4::Attention node and its reference body."""
    types = [TensorProto.FLOAT] * 7 + [TensorProto.INT64] * 2
    inputs = [helper.make_tensor_value_info(name, t, None) for name, t in zip(INPUTS, types)]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in OUTPUTS]
    node = helper.make_node(OP_TYPE, list(INPUTS), list(OUTPUTS), domain=DOMAIN, **fields)
    graph = helper.make_graph([node], "one_attention", inputs, outputs)
    function = attention_function()
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)])
    return model.SerializeToString()


def feeds(batch: int, seq: int, past: int, padding: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    angles = np.arange(MAX_POS)[:, None] * (1.0 / 10000 ** (np.arange(0, D, 2) / D))[None]
    mask = np.ones((batch, past + seq), np.int64)
    mask[0, :padding] = 0  # the first row is left-padded
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)[:, -seq:]
    return {
        "query": rng.standard_normal((batch, seq, HEADS * D)).astype(np.float32),
        "key": rng.standard_normal((batch, seq, KV * D)).astype(np.float32),
        "value": rng.standard_normal((batch, seq, KV * D)).astype(np.float32),
        "past_key": rng.standard_normal((batch, KV, past, D)).astype(np.float32),
        "past_value": rng.standard_normal((batch, KV, past, D)).astype(np.float32),
        "cos_table": np.cos(angles).astype(np.float32),
        "sin_table": np.sin(angles).astype(np.float32),
        "position_ids": positions,
        "attention_mask": mask,
    }


@pytest.mark.parametrize(
    "window, rope, seq, past",
    [(4, 1, 3, 6), (4, 1, 1, 9), (0, 0, 5, 0), (0, 1, 1, 7), (3, 0, 6, 2)],
    ids=["sliding-chunk", "sliding-decode", "global-prefill", "global-rope-decode", "sliding-norope"],
)
def test_plugin_math_matches_the_custom_op_reference(window, rope, seq, past):
    fields = {"num_heads": HEADS, "kv_num_heads": KV, "head_dim": D, "window": window, "rope": rope, "scale": 0.3}
    data = feeds(batch=2, seq=seq, past=past, padding=2, seed=window * 10 + seq)
    expected = ort.InferenceSession(one_node_model(fields), providers=["CPUExecutionProvider"]).run(None, data)
    got = attention_math(fields, *(torch.from_numpy(data[name]) for name in INPUTS))
    real = data["attention_mask"].astype(bool)[:, -seq:]  # a padding query's output is unspecified
    np.testing.assert_allclose(got[0].numpy()[real], expected[0][real], atol=1e-5)
    for index in (1, 2):
        np.testing.assert_allclose(got[index].numpy(), expected[index], atol=1e-5)
