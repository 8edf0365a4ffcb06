"""Files the user handed us: JSON read with one InputError line on anything unreadable, and sha256 digests.

`json.loads` fails in more ways than `JSONDecodeError`: bytes that are not UTF-8
(`UnicodeDecodeError`), an integer of more than 4300 digits (a plain `ValueError`),
and arrays nested deep enough to exhaust the recursion limit (`RecursionError`).
Every JSON file read from a checkpoint, an export or an engine goes through here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import InputError


def read_json(path: Path) -> Any:
    """The parsed contents of `path`; InputError naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(str(path), f"not valid JSON ({exc.__class__.__name__}: {str(exc)[:200]})") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (an engine or a checkpoint can be tens of GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
