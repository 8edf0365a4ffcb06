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


def short_repr(value: Any, limit: int = 60) -> str:
    """repr of a JSON value, cut so a hostile value cannot flood a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_MISSING = object()


class JsonFields:
    """Typed access to one JSON object's keys (a config, a manifest); every failure names `where: key`.

    `fix`, when given, ends each message with what the user should do about it
    (a manifest written by an older version says "export it again").
    """

    def __init__(self, raw: Any, where: str, fix: str = "") -> None:
        if not isinstance(raw, dict):
            raise InputError(where, f"must hold a JSON object, got {type(raw).__name__}")
        self.raw, self.where = raw, where
        self._fix = f"; {fix}" if fix else ""

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        """raw[key] checked against `kind` (an int is accepted, as a float, where a float is wanted)."""
        if key not in self.raw or self.raw[key] is None:
            if default is _MISSING:
                raise InputError(f"{self.where}: {key}", f"is missing{self._fix}")
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        value = self.raw[key]
        is_bool = isinstance(value, bool)
        if float in kinds and isinstance(value, int) and not is_bool:
            try:
                return float(value)
            except OverflowError:
                raise InputError(f"{self.where}: {key}", f"is too large for a float{self._fix}") from None
        if not isinstance(value, kinds) or (is_bool and bool not in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise InputError(f"{self.where}: {key}", f"must be {expected}, got {type(value).__name__} {short_repr(value)}{self._fix}")
        return value

    def positive(self, key: str, default: Any = _MISSING) -> int:
        """An int key that must be > 0."""
        value = self.get(key, int, default)
        if value <= 0:
            raise InputError(f"{self.where}: {key}", f"must be a positive integer, got {value}{self._fix}")
        return value
