"""The bounded sliding-window KV cache (`--kv-cache window`): parity with the full cache
across and far past the window, cache sizes, manifest, refusals, engine profiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ARCHITECTURES, hf_config, random_hf_model, save_hf_checkpoint

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.errors import InputError
from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, OrtRunner, TorchRunner
from exaone4.exporter.tiny import TINY_DIR
from exaone4.exporter.trt.profiles import profiles

TARGETS = ("canonical", "ort", "standard")


@pytest.fixture(scope="module")
def window_exports(tiny_exports, tmp_path_factory):
    """The bundled model (window 16, LLLGLLLG) lowered with a bounded cache, per target."""
    root = tmp_path_factory.mktemp("window")
    for target in TARGETS:
        lower_export(tiny_exports["canonical"], root / target, target, kv_cache="window")
    return root


def run_long_decode(runner, layout, ids, mask, steps):
    """Prefill a left-padded batch, then `steps` greedy steps; returns per-step logits of real positions and the session."""
    session = KVCacheSession(runner, layout)
    logits = session.prefill(ids, mask)
    collected = [logits[mask.astype(bool)]]
    for _ in range(steps):
        logits = session.decode(logits[:, -1].argmax(-1))
        collected.append(logits[:, -1])
    return collected, session


@pytest.fixture(scope="module")
def tiny_reference():
    checkpoint = Checkpoint.open(TINY_DIR)
    return load_reference_model(checkpoint), CacheLayout.of(checkpoint.config)


@pytest.mark.parametrize("target", TARGETS)
def test_window_cache_matches_the_reference_far_past_the_window(window_exports, tiny_reference, target):
    model, layout = tiny_reference
    rng = np.random.default_rng(7)
    ids = rng.integers(3, 2000, (2, 40))
    mask = np.ones_like(ids)
    mask[1, :9] = 0  # a left-padded row: its padding also leaves the window
    steps = 70  # 110 positions: almost 7 windows of 16
    expected, _ = run_long_decode(TorchRunner(model), layout, ids, mask, steps)
    got, session = run_long_decode(OrtRunner(window_exports / target), layout, ids, mask, steps)
    worst = max(float(np.abs(e - g).max()) for e, g in zip(expected, got))
    assert worst < 1e-4, f"window cache drifts from the reference: max abs logit error {worst:.3g}"
    for layer in ExportDir.open(window_exports / target).manifest.layers:
        length = session.past[f"past_key_values.{layer.index}.key"].shape[2]
        assert length == (layer.window - 1 if layer.window else 40 + steps), layer


def test_window_cache_is_smaller_and_global_layers_keep_everything(window_exports, tiny_exports, tiny_reference):
    _, layout = tiny_reference
    ids = np.arange(3, 203).reshape(1, 200)
    full = KVCacheSession(OrtRunner(tiny_exports["ort"]), layout)
    bounded = KVCacheSession(OrtRunner(window_exports / "ort"), layout)
    np.testing.assert_allclose(full.prefill(ids), bounded.prefill(ids), atol=1e-4)
    size = lambda session: sum(a.nbytes for a in session.past.values())  # noqa: E731
    assert size(full) / size(bounded) == pytest.approx(8 * 200 / (6 * 15 + 2 * 200))  # 6 sliding layers of W-1 = 15


def test_parity_harness_passes_a_window_export(window_exports, tmp_path):
    result = CliRunner().invoke(main, ["verify", str(window_exports / "ort"), "--checkpoint", "bundled:tiny", "--report",
                                       str(tmp_path / "report"), "--quiet", "--scenario", "prefill_decode",
                                       "--scenario", "left_padded_batch", "--scenario", "long_context"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["export"]["kv_cache"] == "window"
    kv = report["scenarios"][0]["results"]["ort"]["kv"]
    assert all(row[kind]["final_max_rel"] < 1e-4 for row in kv for kind in ("key", "value"))


@pytest.mark.parametrize("name", ["hybrid_gqa", "head_dim_irregular"])
def test_window_export_of_random_hybrids_matches_the_reference(tmp_path, name):
    config = hf_config(**ARCHITECTURES[name])
    checkpoint = save_hf_checkpoint(random_hf_model(config), tmp_path / "ckpt")
    export_checkpoint(checkpoint, tmp_path / "ort", ExportOptions(target="ort", kv_cache="window"))
    opened = Checkpoint.open(checkpoint)
    layout = CacheLayout.of(opened.config)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, config.vocab_size, (2, 9))
    mask = np.ones_like(ids)
    mask[0, :3] = 0
    expected, _ = run_long_decode(TorchRunner(load_reference_model(opened)), layout, ids, mask, 20)
    got, _ = run_long_decode(OrtRunner(tmp_path / "ort"), layout, ids, mask, 20)
    assert max(float(np.abs(e - g).max()) for e, g in zip(expected, got)) < 1e-4


def test_manifest_io_and_side_files(window_exports, tiny_exports):
    manifest = ExportDir.open(window_exports / "ort").manifest
    assert manifest.kv_cache == "window" and manifest.passes["ort:window_cache"] == {"bounded_layers": 6}
    shapes = {io.name: list(io.shape) for io in manifest.inputs + manifest.outputs}
    assert shapes["past_key_values.0.key"][2] == "past_window_sequence"
    assert shapes["past_key_values.3.key"][2] == "past_sequence"
    assert shapes["present.0.value"][2] == "window_sequence"
    assert not (window_exports / "ort" / "genai_config.json").exists()  # onnxruntime-genai needs one cache length
    assert (tiny_exports["ort"] / "genai_config.json").exists()


def test_lowering_keeps_or_refuses_the_cache_kind(window_exports, tmp_path):
    lower_export(window_exports / "canonical", tmp_path / "kept", "standard")
    assert ExportDir.open(tmp_path / "kept").manifest.kv_cache == "window"
    with pytest.raises(InputError, match="exported with --kv-cache window; export again for full"):
        lower_export(window_exports / "canonical", tmp_path / "full", "ort", kv_cache="full")
    assert not (tmp_path / "full").exists()
    result = CliRunner().invoke(main, ["export", "bundled:tiny", "-o", str(tmp_path / "x"), "--kv-cache", "ring"])
    assert result.exit_code == 2 and not (tmp_path / "x").exists()


def test_engine_profiles_bound_the_sliding_pasts(window_exports, tiny_exports):
    manifest = ExportDir.open(window_exports / "ort").manifest
    caps = manifest.window_past_caps()
    assert caps == {f"past_key_values.{i}.{kind}": 15 for i in (0, 1, 2, 4, 5, 6) for kind in ("key", "value")}
    inputs = [(io.name, (1, 2, -1, 32)) for io in manifest.inputs if io.name.startswith("past")]
    decode = profiles(inputs, max_batch=2, max_prefill=64, max_context=512, past_caps=caps)[1]["shapes"]
    assert decode["past_key_values.0.key"][2] == [2, 2, 15, 32]
    assert decode["past_key_values.3.key"][2] == [2, 2, 511, 32]
    assert ExportDir.open(tiny_exports["ort"]).manifest.window_past_caps() == {}
