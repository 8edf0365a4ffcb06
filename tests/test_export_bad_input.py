"""Export refusals: foreign output directories, interrupted runs, refused checkpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import SMALL_CONFIG, write_json, write_random_checkpoint

from exaone4.exporter.errors import InputError
from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export


@pytest.mark.hardening("atomic outputs", tried="output directory holding foreign files", expect="refused without --force; files kept")
def test_existing_foreign_directory_is_refused_without_force(tmp_path):
    checkpoint = write_random_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not empty and holds no export.json; use --force"):
        export_checkpoint(checkpoint, out)
    assert (out / "precious.txt").read_text() == "keep me"
    export_checkpoint(checkpoint, out, ExportOptions(force=True))
    assert (out / "model.onnx").is_file() and not (out / "precious.txt").exists()
    export_checkpoint(checkpoint, out, ExportOptions(target="ort"))  # an earlier export may be replaced


@pytest.mark.hardening("atomic outputs", tried="Ctrl-C while streaming weights", expect="no output, no staging directory")
def test_interrupted_export_leaves_nothing_behind(tmp_path):
    checkpoint = write_random_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"

    def interrupt(step):
        if step == "streaming weights":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(checkpoint, out, progress=interrupt)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no staging directory left


@pytest.mark.hardening("atomic outputs", tried="Ctrl-C during a re-export", expect="earlier export kept intact")
def test_interrupted_export_keeps_the_earlier_one(tmp_path):
    checkpoint = write_random_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    export_checkpoint(checkpoint, out)
    before = (out / "model.onnx").read_bytes()

    def interrupt(step):
        if step.startswith("pass"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(checkpoint, out, ExportOptions(target="ort"), progress=interrupt)
    assert (out / "model.onnx").read_bytes() == before


@pytest.mark.hardening("CLI subprocess", tried="export of a gemma3 config", expect="exit 2, one line on stderr, no traceback (real subprocess)")
def test_refused_checkpoint_is_refused_by_export_with_the_same_message(tmp_path):
    write_random_checkpoint(tmp_path / "ckpt")
    write_json(tmp_path / "ckpt" / "config.json", dict(SMALL_CONFIG, model_type="gemma3"))
    result = subprocess.run(
        [sys.executable, "-m", "exaone4.exporter.cli", "export", str(tmp_path / "ckpt"), "-o", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'ckpt' / 'config.json'}: model_type: is 'gemma3', expected 'exaone4'"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.hardening("exports", tried="lower from a non-canonical export / a non-export", expect="InputError")
def test_lowering_needs_a_canonical_export(tmp_path):
    checkpoint = write_random_checkpoint(tmp_path / "ckpt")
    export_checkpoint(checkpoint, tmp_path / "ort", ExportOptions(target="ort"))
    with pytest.raises(InputError, match="is a 'ort' export; lowering starts from a canonical one"):
        lower_export(tmp_path / "ort", tmp_path / "standard", "standard")
    with pytest.raises(InputError, match="not an export of this tool"):
        lower_export(tmp_path / "ckpt", tmp_path / "standard", "standard")
