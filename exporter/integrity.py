"""Refuse an export whose ONNX files changed after it was written.

`export.json` records the sha256 of `model.onnx` (and `model.onnx.data` when the
weights are external). Every command that uses an export's graph or weights
(lower, quantize, build, verify, generate, triton) calls `check_export_files`
first, so a file edited, truncated or swapped after export is refused with one
line naming it, instead of being built into an engine or served. Hashing reads
every byte: about 2 s per GB on one core, paid once per command.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import sha256_file
from .errors import InputError

MANIFEST = "export.json"


def check_export_files(export_dir: Path, manifest: dict) -> None:
    """Raise InputError unless every file listed in the manifest is present and unchanged."""
    export_dir = Path(export_dir)
    files = manifest.get("files")
    if not isinstance(files, dict) or "model.onnx" not in files:
        raise InputError(f"{export_dir / MANIFEST}: files", "must list model.onnx with its sha256")
    for name in files:
        if Path(name).name != name or name in ("", ".", ".."):
            raise InputError(f"{export_dir / MANIFEST}: files", f"{name!r} is not a file name inside the export")
    for name, digest in files.items():
        path = export_dir / name
        if not path.is_file():
            raise InputError(str(path), f"missing (listed in {MANIFEST})")
        if sha256_file(path) != digest:
            raise InputError(str(path), f"sha256 does not match {MANIFEST} (changed after export?)")
