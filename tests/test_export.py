"""ONNX export: graph structure per target, and parity with the reference and transformers.

Each architecture is traced once (canonical), then lowered to ort and standard
without tracing again. Runs go through onnxruntime on the CPU with the same feeds
as the reference model: a prefill longer than the sliding window, then decode
steps that cross it, and a left-padded batch of 2.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from conftest import ARCHITECTURES, hf_config, random_hf_model, save_hf_checkpoint

from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, OrtRunner, TorchRunner

TOL = 1e-4
PREFILL, DECODE = 11, 6
EXPORTED = ("hybrid_gqa", "all_global_mqa_tied", "head_dim_irregular")
TARGETS = ("canonical", "ort", "standard")


@pytest.fixture(scope="module", params=EXPORTED)
def exported(request, tmp_path_factory):
    """(hf model, reference model, {target: export dir}) for one architecture."""
    root = tmp_path_factory.mktemp(request.param)
    hf_model = random_hf_model(hf_config(**ARCHITECTURES[request.param]))
    checkpoint = save_hf_checkpoint(hf_model, root / "checkpoint")
    dirs = {"canonical": root / "canonical"}
    export_checkpoint(checkpoint, dirs["canonical"], ExportOptions(target="canonical"))
    for target in ("ort", "standard"):
        dirs[target] = root / target
        lower_export(dirs["canonical"], dirs[target], target)
    return hf_model, load_reference_model(Checkpoint.open(checkpoint)), dirs


def op_counts(path) -> Counter:
    model = onnx.load(str(path / "model.onnx"), load_external_data=False)
    return Counter((node.domain or "", node.op_type) for node in model.graph.node)


def test_canonical_graph_has_one_custom_node_per_layer(exported):
    _, reference, dirs = exported
    model = onnx.load(str(dirs["canonical"] / "model.onnx"), load_external_data=False)
    nodes = [n for n in model.graph.node if n.domain == "exaone4"]
    assert [n.op_type for n in nodes] == ["Attention"] * reference.config.num_layers
    for node, spec in zip(nodes, reference.config.layers):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["window"] == (spec.window or 0) and attrs["rope"] == int(spec.rope)
        assert attrs["num_heads"] == reference.config.num_heads and attrs["kv_num_heads"] == reference.config.num_kv_heads
        assert attrs["head_dim"] == reference.config.head_dim
        assert attrs["scale"] == pytest.approx(reference.config.head_dim**-0.5)
    assert [(f.domain, f.name) for f in model.functions] == [("exaone4", "Attention")]
    onnx.checker.check_model(model, full_check=True)


def test_ort_graph_uses_group_query_attention_only(exported):
    _, reference, dirs = exported
    counts = op_counts(dirs["ort"])
    assert counts[("com.microsoft", "GroupQueryAttention")] == reference.config.num_layers
    assert not any(domain == "exaone4" for domain, _ in counts)
    rope_layers = sum(spec.rope for spec in reference.config.layers)
    assert counts[("", "RotaryEmbedding")] == 2 * rope_layers


def test_standard_graph_uses_standard_ops_only(exported):
    _, reference, dirs = exported
    counts = op_counts(dirs["standard"])
    assert counts[("", "Attention")] == reference.config.num_layers
    assert {domain for domain, _ in counts} == {""}
    model = onnx.load(str(dirs["standard"] / "model.onnx"), load_external_data=False)
    assert not model.functions
    onnx.checker.check_model(model, full_check=True)


def hf_logits(hf_model, ids, mask, positions, cache):
    out = hf_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                   position_ids=torch.from_numpy(positions), cache=cache, use_cache=True)
    return out.logits.float().numpy(), out.cache


@pytest.mark.parametrize("target", TARGETS)
@torch.no_grad()
def test_prefill_then_decode_across_the_window(exported, target):
    hf_model, reference, dirs = exported
    layout = CacheLayout.of(reference.config)
    ids = np.random.default_rng(0).integers(3, reference.config.vocab_size, (1, PREFILL + DECODE))
    with OrtRunner(dirs[target]) as ort_runner:
        ours, ref = KVCacheSession(ort_runner, layout), KVCacheSession(TorchRunner(reference), layout)
        got, expected = ours.prefill(ids[:, :PREFILL]), ref.prefill(ids[:, :PREFILL])
        hf, cache = hf_logits(hf_model, ids[:, :PREFILL], np.ones((1, PREFILL), np.int64), np.arange(PREFILL)[None], None)
        assert np.abs(got - expected).max() <= TOL and np.abs(got - hf).max() <= TOL
        for step in range(PREFILL, PREFILL + DECODE):
            got, expected = ours.decode(ids[:, step]), ref.decode(ids[:, step])
            hf, cache = hf_logits(hf_model, ids[:, step : step + 1], np.ones((1, step + 1), np.int64), np.array([[step]]), cache)
            assert np.abs(got - expected).max() <= TOL, f"{target} decode at position {step}"
            assert np.abs(got - hf).max() <= TOL
        for i in range(reference.config.num_layers):  # the cache itself, after crossing the window
            key = f"present.{i}.key"
            assert np.abs(ours.last_outputs[key] - ref.last_outputs[key]).max() <= TOL


@pytest.mark.parametrize("target", TARGETS)
def test_left_padded_batch_rows_match_running_alone(exported, target):
    _, reference, dirs = exported
    layout = CacheLayout.of(reference.config)
    rng = np.random.default_rng(1)
    long_row = rng.integers(3, reference.config.vocab_size, 9)
    short_row = rng.integers(3, reference.config.vocab_size, 4)
    pad = len(long_row) - len(short_row)
    ids = np.stack((long_row, np.concatenate((np.zeros(pad, np.int64), short_row))))
    mask = np.ones_like(ids)
    mask[1, :pad] = 0
    with OrtRunner(dirs[target]) as runner:
        batch = KVCacheSession(runner, layout)
        logits = batch.prefill(ids, mask)
        for row, tokens, start in ((0, long_row, 0), (1, short_row, pad)):
            alone = KVCacheSession(runner, layout)
            assert np.abs(logits[row, start:] - alone.prefill(tokens[None])[0]).max() <= TOL
        next_tokens = logits[:, -1].argmax(-1)
        stepped = batch.decode(next_tokens)
        for row, tokens in ((0, long_row), (1, short_row)):
            alone = KVCacheSession(runner, layout)
            alone.prefill(tokens[None])
            assert np.abs(stepped[row] - alone.decode(next_tokens[row : row + 1])[0]).max() <= TOL


def test_manifest_describes_the_export(exported):
    _, reference, dirs = exported
    manifest = json.loads((dirs["ort"] / "export.json").read_text())
    assert manifest["target"] == "ort" and manifest["dtype"] == "float32" and manifest["opset"] == 23
    assert [layer["kind"] for layer in manifest["layers"]] == [s.kind.value for s in reference.config.layers]
    inputs = {io["name"]: io for io in manifest["io"]["inputs"]}
    assert inputs["attention_mask"]["shape"] == ["batch", "past_sequence + sequence"]
    assert inputs["past_key_values.0.key"]["shape"] == ["batch", reference.config.num_kv_heads, "past_sequence", reference.config.head_dim]
    outputs = [io["name"] for io in manifest["io"]["outputs"]]
    assert outputs[0] == "logits" and len(outputs) == 1 + 2 * reference.config.num_layers
    assert set(manifest["source"]["sha256"]) == {"config.json", "model.safetensors"}
    assert "model.onnx" in manifest["files"] and manifest["passes"]["ort:lower_ort"]["group_query_attention"] > 0
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["tool_versions"])
