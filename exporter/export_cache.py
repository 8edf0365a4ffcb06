"""The export cache: `generate CHECKPOINT --backend ort` exports once, then reuses the export.

    export = cached_export(Checkpoint.open(path), cache_dir=None, notice=print)

An entry is an ort export with last-position logits (what generation needs, and the
faster prefill) under `CACHE/exports/<key>/`, where the key is a digest of the
checkpoint's config and weight hashes: the same weights anywhere on disk share one
entry, and changed weights miss it. The cache lives in `$XDG_CACHE_HOME/exaone4-export`
(default `~/.cache/exaone4-export`) unless a directory is given. An entry that fails
to open (hashes changed, written by an older version) is exported again over itself.
Hashing the checkpoint reads every weight byte, about 2 s per GB, on every call.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from .artifacts import ExportDir
from .checkpoint import Checkpoint
from .errors import InputError

CACHE_OPTIONS = {"target": "ort", "dtype": "float32", "kv_cache": "full", "logits": "last"}


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/exaone4-export`, or `~/.cache/exaone4-export` (where tools of the field keep theirs)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "exaone4-export"


def cache_key(hashes: dict[str, str]) -> str:
    """A digest of the checkpoint's file hashes and the export options: the entry's folder name."""
    text = json.dumps({"files": hashes, "options": CACHE_OPTIONS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_export(
    checkpoint: Checkpoint, cache_dir: Path | None = None, notice: Callable[[str], None] = lambda message: None
) -> ExportDir:
    """The cached ort export of `checkpoint`, exported first when there is none that matches."""
    from .export import ExportOptions, export_checkpoint

    hashes = checkpoint.file_hashes()
    entry = Path(cache_dir or default_cache_dir()) / "exports" / cache_key(hashes)
    if ExportDir.exists(entry):
        try:
            export = ExportDir.open(entry)
        except InputError as exc:
            notice(f"cached export {entry} is unusable ({exc.problem}); exporting again")
        else:
            if export.manifest.source.get("sha256") == hashes:
                notice(f"using the cached ort export {entry}")
                return export
    notice(f"exporting {checkpoint.directory} for onnxruntime into the cache: {entry}")
    entry.parent.mkdir(parents=True, exist_ok=True)
    options = ExportOptions(**CACHE_OPTIONS, force=True)
    export_checkpoint(checkpoint.directory, entry, options)
    return ExportDir.open(entry, check_files=False)  # just written
