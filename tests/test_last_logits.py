"""`--logits last`: the lm_head reads the last position only; same next-token logits as the reference."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.export import lower_export
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, OrtRunner, TorchRunner
from exaone4.exporter.tiny import TINY_DIR


@pytest.fixture(scope="module")
def last_exports(tiny_exports, tmp_path_factory):
    root = tmp_path_factory.mktemp("last-logits")
    for target in ("canonical", "ort", "standard"):
        lower_export(tiny_exports["canonical"], root / target, target, logits="last")
    return root


@pytest.mark.parametrize("target", ["canonical", "ort", "standard"])
def test_last_position_logits_match_the_reference(last_exports, target):
    checkpoint = Checkpoint.open(TINY_DIR)
    layout = CacheLayout.of(checkpoint.config)
    ids = np.random.default_rng(3).integers(3, 2000, (2, 30))
    mask = np.ones_like(ids)
    mask[0, :11] = 0  # left padding: a row's last position is still a real token
    reference = KVCacheSession(TorchRunner(load_reference_model(checkpoint)), layout)
    export = KVCacheSession(OrtRunner(last_exports / target), layout)
    expected, got = reference.prefill(ids, mask), export.prefill(ids, mask)
    assert got.shape == (2, 1, checkpoint.config.vocab_size)
    np.testing.assert_allclose(got, expected[:, -1:], atol=1e-4)
    for _ in range(5):
        token = expected[:, -1].argmax(-1)
        expected, got = reference.decode(token), export.decode(token)
        np.testing.assert_allclose(got, expected, atol=1e-4)
    real = reference.mask.astype(bool)  # padded slots hold whatever a padding query made
    for name, value in reference.past.items():  # the cache still holds every position
        np.testing.assert_allclose(export.past[name].transpose(0, 2, 1, 3)[real], value.transpose(0, 2, 1, 3)[real], atol=1e-4)


def test_graph_manifest_and_refusals(last_exports, tmp_path):
    manifest = ExportDir.open(last_exports / "ort").manifest
    assert manifest.logits == "last" and manifest.passes["ort:last_logits"] == {"sliced": 1}
    assert {io.name: io.shape for io in manifest.outputs}["logits"] == ("batch", 1, 2048)
    graph = onnx.load(last_exports / "ort" / "model.onnx", load_external_data=False).graph
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [1, 2048]
    assert not (last_exports / "ort" / "genai_config.json").exists()
    result = CliRunner().invoke(main, ["lower", str(last_exports / "canonical"), "-o", str(tmp_path / "all"),
                                       "--target", "ort", "--logits", "all"])
    assert result.exit_code == 2 and "export again for all" in result.output
    assert not (tmp_path / "all").exists()


def test_parity_harness_compares_the_last_position(last_exports, tmp_path):
    result = CliRunner().invoke(main, ["verify", str(last_exports / "ort"), "--checkpoint", "bundled:tiny", "--report",
                                       str(tmp_path / "r"), "--quiet", "--scenario", "prefill", "--scenario", "left_padded_batch"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    prefill = report["scenarios"][0]["results"]["ort"]["steps"][0]
    assert prefill["positions"] == 1 and prefill["max_rel"] < 1e-5
