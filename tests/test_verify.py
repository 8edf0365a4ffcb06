"""The parity harness: passes a correct export, fails a corrupted one and names the layer."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from exaone4.exporter.cli import main
from exaone4.exporter.jsonfile import sha256_file

FAST = ["--scenario", "prefill", "--scenario", "prefill_decode"]


def verify(export_dir, report_dir, *extra):
    return CliRunner().invoke(main, ["verify", str(export_dir), "--checkpoint", "bundled:tiny", "--report", str(report_dir),
                                     "--quiet", *extra])


SYNTHETIC = ["prefill", "prefill_decode", "left_padded_batch", "long_context"]


@pytest.mark.parametrize("target", ["canonical", "ort", "standard"])
def test_correct_export_passes_with_all_report_kinds(tiny_exports, tmp_path, target):
    # every scenario on ort; the others leave out perplexity (about 15 s a target on 2 cores, the same graph's logits)
    extra = [] if target == "ort" else [arg for name in SYNTHETIC for arg in ("--scenario", name)]
    result = verify(tiny_exports[target], tmp_path / "report", *extra)
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert files == ["error_per_layer.png", "error_per_step.png", "junit.xml", "report.json", "report.md"]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["passed"] and report["precision"] == "fp32"
    assert [s["name"] for s in report["scenarios"]] == SYNTHETIC
    assert (report["perplexity"] is not None) == (target == "ort")
    if target == "ort":
        assert report["perplexity"]["results"]["ort"]["passed"] and set(report["perplexity"]["skipped"]) == {"transformers"}
    long_context = report["scenarios"][3]
    assert len(long_context["feeds"]["prompts"][0]) + len(long_context["feeds"]["decode_tokens"]) == 511  # context 512
    decode = report["scenarios"][1]["results"]["ort"]
    assert decode["greedy_match"] == decode["greedy_tokens"] == 8
    assert len(decode["hidden"]) == 8 and all(h["max_rel"] < 1e-4 for h in decode["hidden"])
    assert set(report["scenarios"][0]["results"]) == {"ort", "transformers"}
    assert (tmp_path / "report" / "error_per_layer.png").read_bytes()[:4] == b"\x89PNG"


def corrupt_layer(export_dir, destination, layer: int, factor: float = 1.5):
    """Copy an export and scale one MLP matrix of one layer.

    The gate projection, because EXAONE's post-FFN RMSNorm cancels a scaled up or
    down projection exactly (the norm removes any scale of its input): a harness
    test that scaled those would pass by construction.
    """
    shutil.copytree(export_dir, destination)
    model = onnx.load(str(destination / "model.onnx"))
    name = f"model.layers.{layer}.mlp.gate_proj.weight_t"
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(factor), name))
            break
    else:
        raise AssertionError(f"{name} not in the graph")
    onnx.save(model, str(destination / "model.onnx"))
    # record the new hash, as a buggy pass writing a wrong export would: verify refuses a file
    # changed after export (exporter/artifacts.py), and this test is about a wrong export's numbers
    manifest = json.loads((destination / "export.json").read_text())
    manifest["files"]["model.onnx"] = sha256_file(destination / "model.onnx")
    (destination / "export.json").write_text(json.dumps(manifest))
    return destination


@pytest.mark.parametrize("layer", [0, 5])
def test_corrupted_layer_fails_and_is_named(tiny_exports, tmp_path, layer):
    broken = corrupt_layer(tiny_exports["ort"], tmp_path / "broken", layer)
    result = verify(broken, tmp_path / "report", "--backend", "ort", *FAST)
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert not report["passed"]
    for scenario in report["scenarios"]:
        outcome = scenario["results"]["ort"]
        assert not outcome["passed"] and outcome["failures"]
        assert outcome["first_divergence"]["layer"] == layer
        assert outcome["first_divergence"]["what"].startswith("hidden state")
    suite = ET.parse(tmp_path / "report" / "junit.xml").getroot()
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["prefill", "prefill_decode"]
    assert "logits max rel error" in suite.find(".//failure").get("message")
    assert f"layer {layer}" in (tmp_path / "report" / "report.md").read_text()


def test_junit_lists_skipped_backend(tiny_exports, tmp_path):
    result = verify(tiny_exports["ort"], tmp_path / "report", "--backend", "ort", "--backend", "trt", "--scenario", "prefill")
    assert result.exit_code == 0, result.output
    suite = ET.parse(tmp_path / "report" / "junit.xml").getroot()
    skipped = [case for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert [case.get("classname") for case in skipped] == ["parity.trt"]
    assert "no engine given" in skipped[0].find("skipped").get("message")


def test_bad_input_exits_2(tiny_exports, tmp_path):
    not_export = tmp_path / "nothing"
    not_export.mkdir()
    result = verify(not_export, tmp_path / "report")
    assert result.exit_code == 2 and "not an export of this tool" in result.output
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    result = verify(tiny_exports["ort"], occupied)
    assert result.exit_code == 2 and "holds no report.json" in result.output
    result = verify(tiny_exports["ort"], tmp_path / "r2", "--scenario", "nope")
    assert result.exit_code == 2 and "unknown scenario" in result.output
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():  # CPU onnxruntime: refused up front
        result = verify(tiny_exports["ort"], tmp_path / "r3", "--backend", "ort", "--ort-device", "cuda")
        assert result.exit_code == 2 and "this onnxruntime has no CUDAExecutionProvider" in result.output
        assert not (tmp_path / "r3").exists()
