"""Typed artifacts and the contract: manifests read in one place, names and dtypes spelled once."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from exaone4.exporter import contract
from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("exporter", "graphs", "scripts") for p in (ROOT / folder).rglob("*.py")]
# Spelled in contract.py; a string literal equal to one of them anywhere else is a second definition.
FILE_NAMES = {value for name, value in vars(contract).items() if name.endswith(("_FILE", "_MANIFEST", "_CONFIG")) and isinstance(value, str)}
TRITON_TYPES = {d.triton for d in contract.DTYPES.values()}


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_file_names_and_dtype_spellings_are_defined_once():
    assert {"export.json", "build.json", "model.onnx", "chat_template.jinja", "generation_config.json"} <= FILE_NAMES
    offenders = {}
    for path in SOURCES:
        if path.name == "contract.py":
            continue
        found = _string_constants(path) & (FILE_NAMES | TRITON_TYPES | {"past_key_values", "present"})
        if found:
            offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert offenders == {}


def test_only_the_artifact_classes_read_manifest_keys():
    """No module but artifacts.py indexes a manifest or build record by its keys."""
    readers = []
    for path in SOURCES:
        if path.name in ("artifacts.py", "contract.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("manifest", "build"):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []


def test_dtype_vocabulary_reads_every_spelling():
    assert contract.dtype("FLOAT").name == contract.dtype("float").name == contract.dtype("DataType.FLOAT").name == "float32"
    assert contract.dtype("HALF").name == contract.dtype("FLOAT16").name == contract.dtype("TYPE_FP16").name == "float16"
    assert contract.dtype("float16").triton == "TYPE_FP16" and contract.dtype("int64").tensorrt == "INT64"
    with pytest.raises(KeyError):
        contract.dtype("float8")


def _rewrite(export: Path, change) -> None:
    manifest = json.loads((export / "export.json").read_text())
    change(manifest)
    (export / "export.json").write_text(json.dumps(manifest))


def test_a_manifest_written_before_the_typed_artifacts_still_opens(tiny_exports, tmp_path):
    """Manifests from before `kv_cache` / `logits` existed, with onnx_ir's "float" dtype spelling."""
    old = tmp_path / "old"
    shutil.copytree(tiny_exports["ort"], old)

    def make_old(manifest):
        del manifest["kv_cache"], manifest["logits"]
        for tensor in manifest["io"]["inputs"] + manifest["io"]["outputs"]:
            tensor["dtype"] = {"float32": "float"}.get(tensor["dtype"], tensor["dtype"])

    _rewrite(old, make_old)
    export = ExportDir.open(old)
    assert export.manifest.kv_cache == "full" and export.manifest.logits == "all"
    assert {t.name: t.dtype for t in export.manifest.outputs}["logits"] == "float32"
    assert export.cache_layout().dtype.name == "float32" and export.model_path == old / "model.onnx"


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format="exaone4-export/0"), "not a manifest of this tool"),
    (lambda m: m.pop("target"), "export.json: target: is missing; export it again with this version"),
    (lambda m: m.update(layers="LLLG"), "export.json: layers: must be list, got str"),
    (lambda m: m["io"]["inputs"][0].update(dtype="complex64"), "has an unknown dtype 'complex64'"),
    (lambda m: m["config"].update(num_layers=9), "config.json: differs from the architecture recorded in export.json"),
])
@pytest.mark.hardening("exports", tried="manifest with a wrong format, a missing or mistyped key, an unknown dtype, another architecture",
                       expect="InputError naming export.json and the key, saying to export again")
def test_a_broken_manifest_is_refused_naming_the_key(tiny_exports, tmp_path, change, message):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_exports["ort"], broken)
    _rewrite(broken, change)
    with pytest.raises(InputError, match=message):
        ExportDir.open(broken)
