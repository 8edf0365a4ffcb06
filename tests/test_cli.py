"""The command line: commands listed, inspect output, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import SMALL_CONFIG, write_json, write_random_checkpoint
from safetensors.torch import load_file, save_file

from exaone4.exporter.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("inspect", "generate"):
        assert command in result.output


def test_inspect_prints_architecture(tmp_path):
    result = run("inspect", write_random_checkpoint(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["layer_kinds"] == ["sliding_attention", "full_attention"]
    assert summary["layer_rope"] == [True, False]
    assert summary["sliding_window"] == 4 and summary["storage_dtype"] == "F32"
    assert summary["parameters"] > 0 and summary["size_bytes"] > 0


def test_inspect_bundled_model_table():
    result = run("inspect", "bundled:tiny")
    assert result.exit_code == 0, result.output
    assert "LLLGLLLG" in result.output and "llama3" in result.output


def _other_model_type(d):
    write_random_checkpoint(d)
    write_json(d / "config.json", dict(SMALL_CONFIG, model_type="llama"))


def _unknown_rope(d):
    write_random_checkpoint(d)
    write_json(d / "config.json", dict(SMALL_CONFIG, rope_scaling={"rope_type": "yarn", "factor": 2.0}))


def _truncated(d):
    write_random_checkpoint(d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:-64])


def _absent_shard(d):
    write_random_checkpoint(d)
    write_json(d / "model.safetensors.index.json", {"weight_map": {"model.norm.weight": "model-00002.safetensors"}})


def _wrong_shape(d):
    write_random_checkpoint(d)
    tensors = load_file(d / "model.safetensors")
    tensors["model.norm.weight"] = tensors["model.norm.weight"][:-1].clone()
    save_file(tensors, str(d / "model.safetensors"))


def _missing_config(d):
    write_random_checkpoint(d)
    (d / "config.json").unlink()


@pytest.mark.hardening("CLI subprocess", expect="exit 2, one line on stderr, no traceback (real subprocess)")
@pytest.mark.parametrize(
    "breakage, expected",
    [
        (_other_model_type, "config.json: model_type: is 'llama', expected 'exaone4'"),
        (_unknown_rope, "rope_scaling.rope_type: 'yarn' is not supported"),
        (_truncated, "model.safetensors: tensor 'model.norm.weight': data_offsets"),
        (_absent_shard, "model-00002.safetensors: shard named in the index is missing"),
        (_wrong_shape, "'model.norm.weight' has shape [31], expected [32]"),
        (_missing_config, "config.json: config.json not found"),
    ],
)
def test_bad_checkpoints_exit_2_with_one_line(tmp_path, breakage, expected):
    breakage(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "exaone4.exporter.cli", "inspect", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_export_lower_and_generate_agree_across_backends(tmp_path):
    """The README session: export the bundled model, lower it, chat through ort and torch."""
    assert run("export", "bundled:tiny", "-o", tmp_path / "canonical", "--quiet").exit_code == 0
    assert run("lower", tmp_path / "canonical", "-o", tmp_path / "ort", "--target", "ort", "--quiet").exit_code == 0
    outputs = {}
    for backend in ("ort", "torch"):
        result = CliRunner().invoke(main, ["generate", str(tmp_path / "ort"), "--backend", backend,
                                           "--prompt", "Show me def dumps", "--max-new-tokens", "24"])
        assert result.exit_code == 0, result.output
        outputs[backend] = result.stdout
    assert outputs["ort"] == outputs["torch"] and len(outputs["ort"].strip()) > 0


@pytest.mark.hardening("CLI", tried="generate --backend ort on a checkpoint", expect="exit 2, one line")
def test_ort_backend_on_a_checkpoint_exports_into_the_cache_once(tmp_path):
    """`generate CHECKPOINT --backend ort` exports into the cache, says where, and reuses it while the weights match."""
    ask = ["generate", "bundled:tiny", "--backend", "ort", "--prompt", "Show me def dumps", "--max-new-tokens", "12",
           "--cache-dir", str(tmp_path / "cache")]
    first = CliRunner().invoke(main, ask)
    assert first.exit_code == 0, first.output
    assert f"into the cache: {tmp_path / 'cache' / 'exports'}" in first.stderr
    [entry] = (tmp_path / "cache" / "exports").iterdir()
    again = CliRunner().invoke(main, ask)
    assert again.exit_code == 0 and f"using the cached ort export {entry}" in again.stderr
    assert again.stdout == first.stdout  # the same greedy text from the reused export
    torch_text = CliRunner().invoke(main, ask[:3] + ["torch"] + ask[4:-2])
    assert torch_text.stdout == first.stdout
    (entry / "model.onnx").write_bytes(b"corrupt")  # a damaged entry is exported again, not used
    repaired = CliRunner().invoke(main, ask)
    assert repaired.exit_code == 0 and "is unusable" in repaired.stderr and repaired.stdout == first.stdout


def test_json_progress_and_result(tmp_path):
    result = CliRunner().invoke(main, ["export", "bundled:tiny", "-o", str(tmp_path / "e"), "--json"])
    assert result.exit_code == 0
    manifest = json.loads(result.stdout)
    assert manifest["target"] == "canonical"
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    steps = [e["name"] for e in events if e["event"] == "step"]
    assert steps[:2] == ["reading checkpoint", "tracing with fake weights"] and "streaming weights" in steps
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == 90  # 8 layers x 11 + embedding + final norm (lm_head tied)


def test_quiet_export_prints_no_torchvision_notices(tmp_path):
    """torch.onnx logs "torchvision is not installed. Skipping torchvision::nms" (and three more)
    each time it builds its op registry; torchvision is not a dependency, so `export --quiet` must
    not pass that on. A real subprocess: the notices go through `logging` to stderr."""
    checkpoint = write_random_checkpoint(tmp_path / "ckpt")
    result = subprocess.run(
        [sys.executable, "-m", "exaone4.exporter.cli", "export", str(checkpoint), "-o", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "torchvision" not in result.stderr, result.stderr


def test_torchvision_filter_drops_only_those_notices_and_only_inside(caplog):
    """The filter is scoped and narrow: other records of torch.onnx's registry logger still pass,
    and once the block ends the torchvision notice passes again."""
    import logging

    from exaone4.exporter.trace import _REGISTRY_LOGGER, _without_torchvision_skips

    logger = logging.getLogger(_REGISTRY_LOGGER)
    with caplog.at_level(logging.WARNING, logger=_REGISTRY_LOGGER):
        with _without_torchvision_skips():
            logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            logger.warning("'%s' does not have a 'default' overload.", "aten::x")
        logger.warning("torchvision is not installed. Skipping %s", "torchvision::roi_align")
    assert [r.getMessage() for r in caplog.records] == [
        "'aten::x' does not have a 'default' overload.",
        "torchvision is not installed. Skipping torchvision::roi_align",
    ]
