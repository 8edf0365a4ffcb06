"""Issue 9's bad-input suite, through the command line.

Every case builds one broken input in a fresh directory and runs the command a user
would run on it. Each refusal must be: exit code 2, exactly one line on stderr that
starts with "error:" and names the file or field, nothing on stdout, no traceback,
and no output written (the -o / --report / --repo path does not exist afterwards,
and no staging directory or lock file is left next to it).

Cases that tests/test_checkpoint.py, test_config.py and test_cli.py already cover at
the library level are repeated here only where the CLI path adds something (the
export command writes nothing); the rest are new: hand-written hostile safetensors
files, shard indexes pointing out of the directory, exports changed after export.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL_CONFIG, write_json, write_random_checkpoint
from safetensors.torch import load_file, save_file

from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.load import load_reference_model

from hardening import safetensors_bytes

REFUSED = "exit 2, one line naming the file or field, no output written"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(result, expected: str, out=None, parent=None, before=None) -> str:
    """The one shape every refusal has; returns the error line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert result.stdout == "" and "Traceback" not in result.output
    if out is not None:
        assert not out.exists()
    if parent is not None:
        assert sorted(p.name for p in parent.iterdir()) == before  # no staging directory, no lock left
    return lines[0]


# --------------------------------------------------------------------------- checkpoints


def _config(**changes):
    def build(d):
        write_random_checkpoint(d)
        write_json(d / "config.json", dict(SMALL_CONFIG, **changes))
    return build


def _config_text(data: bytes):
    def build(d):
        write_random_checkpoint(d)
        (d / "config.json").write_bytes(data)
    return build


def _rewrite_header(change):
    """Rewrite model.safetensors by hand after `change(header, order)` edits its JSON header;
    `order` lists the tensor names by data offset."""
    def build(d):
        write_random_checkpoint(d)
        path = d / "model.safetensors"
        data = path.read_bytes()
        length = int.from_bytes(data[:8], "little")
        header, body = json.loads(data[8 : 8 + length]), data[8 + length :]
        order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
        body = change(header, order) or body
        path.write_bytes(safetensors_bytes(header, body))
    return build


def _shift(index: int, delta: int):
    def change(header, order):
        entry = header[order[index]]
        entry["data_offsets"] = [o + delta for o in entry["data_offsets"]]
    return change


def _set(field: str, value, index: int = 0):
    def change(header, order):
        header[order[index]][field] = value
    return change


def _truncate_body(header, order):
    return b"\0" * (header[order[-1]]["data_offsets"][1] - 100)


def _raw_file(data: bytes):
    def build(d):
        write_random_checkpoint(d)
        (d / "model.safetensors").write_bytes(data)
    return build


def _tensors(change):
    def build(d):
        write_random_checkpoint(d)
        tensors = load_file(d / "model.safetensors")
        change(tensors)
        save_file(tensors, str(d / "model.safetensors"))
    return build


def _index(weight_map, make_link: bool = False):
    def build(d):
        write_random_checkpoint(d)
        (d / "model.safetensors").rename(d / "shard-1.safetensors")
        (d.parent / "outside.safetensors").write_bytes((d / "shard-1.safetensors").read_bytes())
        if make_link:
            os.symlink(d.parent / "outside.safetensors", d / "link.safetensors")
        write_json(d / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    return build


def _index_text(text: str):
    def build(d):
        write_random_checkpoint(d)
        (d / "model.safetensors.index.json").write_text(text)
    return build


def _pickle_only(name: str):
    def build(d):
        d.mkdir()
        write_json(d / "config.json", SMALL_CONFIG)
        (d / name).write_bytes(b"\x80\x04 a pickle is never opened")
    return build


CHECKPOINT_CASES = [
    # config.json
    ("config.json", "not JSON", _config_text(b'{"model_type": "exaone4",'), "config.json: not valid JSON"),
    ("config.json", "not UTF-8", _config_text(b'{"model_type": "\xff\xfe"}'), "config.json: not valid JSON (UnicodeDecodeError"),
    ("config.json", "a JSON list", _config_text(b"[1, 2]"), "config.json: must hold a JSON object, got list"),
    ("config.json", "int of 5000 digits", _config_text(b'{"vocab_size": ' + b"9" * 5000 + b"}"), "config.json: not valid JSON (ValueError"),
    ("config.json", "wrong type (hidden_size string)", _config(hidden_size="32"), "config.json: hidden_size: must be int, got str"),
    ("config.json", "wrong type (layer_types entry a list)", _config(layer_types=[[], "full_attention"]), "config.json: layer_types[0]: is []"),
    ("config.json", "zero size", _config(intermediate_size=0), "config.json: intermediate_size: must be a positive integer, got 0"),
    ("config.json", "negative size", _config(vocab_size=-64), "config.json: vocab_size: must be a positive integer, got -64"),
    ("config.json", "heads do not divide hidden", _config(num_attention_heads=6, num_key_value_heads=6),
     "config.json: num_attention_heads: 6 does not divide hidden_size 32"),
    ("config.json", "kv heads do not divide heads", _config(num_key_value_heads=3), "config.json: num_key_value_heads: 3 does not divide"),
    ("config.json", "unknown model_type", _config(model_type="qwen3"), "config.json: model_type: is 'qwen3', expected 'exaone4'"),
    ("config.json", "unknown rope type", _config(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}),
     "config.json: rope_parameters.rope_type: 'yarn' is not supported"),
    ("config.json", "rope_theta Infinity", _config_text(json.dumps(dict(SMALL_CONFIG, rope_theta=float("inf"))).encode()),
     "config.json: rope_theta: must be a positive finite number"),
    ("config.json", "rms_norm_eps too large for a float", _config(rms_norm_eps=10**400), "config.json: rms_norm_eps: is too large for a float"),
    # safetensors, written by hand
    ("safetensors", "file shorter than the 8-byte length", _raw_file(b"\x01\x02"), "model.safetensors: too short for a safetensors file"),
    ("safetensors", "header length larger than the file", _raw_file(safetensors_bytes({}, length=1 << 40)),
     "model.safetensors: header length 1099511627776 exceeds the file"),
    ("safetensors", "header not JSON", _raw_file(safetensors_bytes(b"{not json")), "model.safetensors: safetensors header is not valid JSON"),
    ("safetensors", "truncated body", _rewrite_header(_truncate_body), "lie outside the file's"),
    ("safetensors", "offsets outside the file", _rewrite_header(_shift(-1, 8)), "lie outside the file's"),
    ("safetensors", "overlapping tensors", _rewrite_header(_shift(1, -4)), "overlaps tensor"),
    ("safetensors", "gap between tensors", _rewrite_header(lambda h, order: _shift(0, 4)(h, order) or None), "leaving a gap"),
    ("safetensors", "offsets disagree with shape x dtype", _rewrite_header(_set("shape", [3, 3])), "hold 8192 bytes but shape [3, 3] of F32 needs 36"),
    ("safetensors", "unknown dtype", _rewrite_header(_set("dtype", "Q4_K")), "has unknown dtype 'Q4_K'"),
    ("safetensors", "negative dimension", _rewrite_header(_set("shape", [-8, -8])), "must be a list of non-negative integers"),
    ("safetensors", "unsupported dtype (I32)", _tensors(lambda t: t.update({"model.norm.weight": t["model.norm.weight"].to(torch.int32)})),
     "tensor 'model.norm.weight' has dtype I32; supported: F32, F16, BF16"),
    ("safetensors", "tensor of the wrong shape", _tensors(lambda t: t.update({"model.norm.weight": torch.ones(33)})),
     "tensor 'model.norm.weight' has shape [33], expected [32]"),
    ("safetensors", "extra tensor", _tensors(lambda t: t.update({"model.layers.7.mlp.up_proj.weight": torch.ones(2)})),
     "unexpected tensor 'model.layers.7.mlp.up_proj.weight'"),
    ("safetensors", "missing tensor", _tensors(lambda t: t.pop("model.layers.1.self_attn.q_norm.weight")),
     "checkpoint: missing tensors: model.layers.1.self_attn.q_norm.weight"),
    # shard index
    ("shard index", "weight_map to ../", _index({"model.norm.weight": "../outside.safetensors"}), "lies outside the checkpoint directory"),
    ("shard index", "weight_map to an absolute path", _index({"model.norm.weight": "/etc/passwd"}), "'/etc/passwd' lies outside"),
    ("shard index", "weight_map to a symlink out", _index({"model.norm.weight": "link.safetensors"}, make_link=True),
     "'link.safetensors' lies outside the checkpoint directory"),
    ("shard index", "weight_map to a missing file", _index({"model.norm.weight": "shard-9.safetensors"}),
     "shard-9.safetensors: shard named in the index is missing"),
    ("shard index", "file name with a NUL byte", _index({"model.norm.weight": "a\u0000b"}), "weight_map: must map tensor names to file names"),
    ("shard index", "not JSON", _index_text("{"), "model.safetensors.index.json: not valid JSON"),
    ("shard index", "no weight_map", _index_text('{"metadata": {}}'), "weight_map: must map tensor names to file names"),
    # pickle
    ("pickle", "pytorch_model.bin only", _pickle_only("pytorch_model.bin"), "pytorch_model.bin: pickle checkpoints are refused"),
    ("pickle", "sharded pickle index only", _pickle_only("pytorch_model.bin.index.json"), "pytorch_model.bin.index.json: pickle checkpoints are refused"),
    ("pickle", "model.pt only", _pickle_only("model.pt"), "model.pt: pickle checkpoints are refused"),
]


@pytest.mark.parametrize(
    "build, expected",
    [pytest.param(build, expected, id=re.sub(r"\W+", "-", f"{category} {tried}").strip("-"), marks=pytest.mark.hardening(category, tried=tried, expect=REFUSED))
     for category, tried, build, expected in CHECKPOINT_CASES],
)
def test_export_refuses_a_broken_checkpoint(tmp_path, build, expected):
    build(tmp_path / "ckpt")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("export", tmp_path / "ckpt", "-o", tmp_path / "out")
    line = assert_refused(result, expected, out=tmp_path / "out", parent=tmp_path, before=before)
    assert str(tmp_path) in line or "checkpoint:" in line  # the file is named by its path


@pytest.mark.hardening("weights", tried="NaN / Inf weight found while streaming the export", expect=REFUSED)
def test_export_refuses_inf_weights_mid_export(tmp_path):
    write_random_checkpoint(tmp_path / "ckpt")
    tensors = load_file(tmp_path / "ckpt" / "model.safetensors")
    tensors["model.layers.1.mlp.gate_proj.weight"][5, 7] = float("inf")
    save_file(tensors, str(tmp_path / "ckpt" / "model.safetensors"))
    result = run("export", tmp_path / "ckpt", "-o", tmp_path / "out")
    assert_refused(result, "model.safetensors: tensor 'model.layers.1.mlp.gate_proj.weight' holds NaN or Inf values",
                   out=tmp_path / "out", parent=tmp_path, before=["ckpt"])


@pytest.mark.hardening("config.json", tried="auto_map naming remote code in the checkpoint", expect="code never imported or run")
def test_auto_map_code_is_never_imported(tmp_path):
    """A checkpoint shipping modeling code that would leave a mark if imported: inspect and the
    reference model load both work, and the code never runs."""
    ckpt = write_random_checkpoint(tmp_path / "ckpt", dict(SMALL_CONFIG, auto_map={
        "AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"}))
    mark = tmp_path / "imported"
    for module in ("modeling_evil", "configuration_evil"):
        (ckpt / f"{module}.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    result = run("inspect", ckpt, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["num_layers"] == 2
    load_reference_model(Checkpoint.open(ckpt))
    assert not mark.exists() and "modeling_evil" not in sys.modules and "configuration_evil" not in sys.modules


# --------------------------------------------------------------------------- exports changed after export


@pytest.fixture
def export_copy(tiny_exports, tmp_path):
    """A copy of the bundled model's canonical export, free to break."""
    export = tmp_path / "export"
    shutil.copytree(tiny_exports["canonical"], export)
    return export


@pytest.fixture
def changed_export(export_copy):
    """The copy, with one byte of model.onnx flipped after export."""
    export = export_copy
    data = bytearray((export / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (export / "model.onnx").write_bytes(bytes(data))
    return export


def _as_fp16_manifest(export):
    """build refuses a float32 export before anything else; say float16 in the manifest (which is not
    hashed) so that the check under test, the model.onnx hash, is the one that refuses."""
    manifest = json.loads((export / "export.json").read_text())
    (export / "export.json").write_text(json.dumps(dict(manifest, dtype="float16")))


COMMANDS = {
    "lower": lambda e, o: ["lower", e, "-o", o, "--target", "ort"],
    "quantize": lambda e, o: ["quantize", e, "--checkpoint", "bundled:tiny", "-o", o],
    "build": lambda e, o: ["build", e, "--precision", "fp16", "-o", o],
    "verify": lambda e, o: ["verify", e, "--checkpoint", "bundled:tiny", "--report", o],
    "generate": lambda e, o: ["generate", e, "--prompt", "hi"],
    "triton": lambda e, o: ["triton", e, "--repo", o],
}


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.hardening(
    "exports", tried=f"model.onnx changed after export, then `{c}`", expect=REFUSED)) for c in COMMANDS])
def test_commands_refuse_an_export_changed_after_export(changed_export, tmp_path, command):
    if command == "build":
        pytest.importorskip("tensorrt_rtx", reason="build needs TensorRT for RTX")
        _as_fp16_manifest(changed_export)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(*COMMANDS[command](changed_export, tmp_path / "out"))
    assert_refused(result, f"{changed_export / 'model.onnx'}: sha256 does not match export.json (changed after export?)",
                   out=tmp_path / "out", parent=tmp_path, before=before)


def _manifest_files(export, files):
    manifest = json.loads((export / "export.json").read_text())
    (export / "export.json").write_text(json.dumps(dict(manifest, files=files)))


@pytest.mark.hardening("exports", tried="model.onnx.data changed after export", expect=REFUSED)
def test_changed_external_data_is_refused(export_copy, tmp_path):
    from exaone4.exporter.jsonfile import sha256_file

    (export_copy / "model.onnx.data").write_bytes(b"weights as exported")
    _manifest_files(export_copy, {"model.onnx": sha256_file(export_copy / "model.onnx"),
                                     "model.onnx.data": sha256_file(export_copy / "model.onnx.data")})
    assert run("lower", export_copy, "-o", tmp_path / "ok", "--target", "standard").exit_code == 0  # intact: accepted
    (export_copy / "model.onnx.data").write_bytes(b"weights swapped later")
    result = run("lower", export_copy, "-o", tmp_path / "out", "--target", "ort")
    assert_refused(result, "model.onnx.data: sha256 does not match export.json", out=tmp_path / "out")


@pytest.mark.parametrize("files, expected", [
    pytest.param(None, "export.json: files: must list model.onnx", id="no files record"),
    pytest.param({"model.onnx": "0" * 64, "../config.json": "0" * 64}, "'../config.json' is not a file name", id="files entry outside"),
    pytest.param("missing", "model.onnx: missing (listed in export.json)", id="model.onnx deleted"),
])
@pytest.mark.hardening("exports", expect=REFUSED)
def test_broken_file_records_are_refused(export_copy, tmp_path, files, expected):
    if files == "missing":
        (export_copy / "model.onnx").unlink()
    else:
        _manifest_files(export_copy, files)
    assert_refused(run("lower", export_copy, "-o", tmp_path / "out", "--target", "ort"), expected, out=tmp_path / "out")
