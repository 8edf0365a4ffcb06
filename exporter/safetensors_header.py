"""Read and validate a safetensors header ourselves, before the safetensors library sees the file.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
header, then the data section. The header maps each tensor name to its dtype,
shape and `data_offsets` [begin, end) into the data section.

The safetensors library refuses most broken files too, but with messages such as
"invalid shape, data type, or offset for tensor" that do not say which tensor, or
"file not fully covered". Here every rule is checked in plain Python and a broken
file is refused with an `InputError` naming the file and the tensor:

- the file holds at least the 8-byte length, and the length fits in the file
  (and under the library's own 100 MB header limit);
- the header is a UTF-8 JSON object; `__metadata__`, when present, is an object;
- each tensor has a known dtype, a shape of non-negative ints and two offsets
  0 <= begin <= end;
- end - begin is exactly the bytes its shape and dtype need;
- the tensors tile the data section: sorted by offset each starts where the
  previous ends (no overlap, no gap), and the last ends where the file ends.

The last rule is the library's: a file it would refuse later, when the tensor is
read, must be refused here, up front, with a clear line.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
# Bits per element of every dtype the safetensors format defines.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
    "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True)
class HeaderEntry:
    """One tensor as the header describes it; offsets are relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(path: Path) -> dict[str, HeaderEntry]:
    """The validated header of the safetensors file at `path` ({tensor name: entry})."""
    path = Path(path)
    size = os.path.getsize(path)
    if size < 8:
        raise InputError(str(path), f"too short for a safetensors file ({size} bytes)")
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > size - 8:
            raise InputError(str(path), f"header length {length} exceeds the file ({size} bytes; truncated?)")
        if length > MAX_HEADER_BYTES:
            raise InputError(str(path), f"header length {length} exceeds the {MAX_HEADER_BYTES}-byte limit")
        raw = f.read(length)
    header = _parse_json(path, raw)
    entries = {name: _entry(path, name, value) for name, value in header.items() if name != "__metadata__"}
    _check_tiling(path, entries, size - 8 - length)
    return entries


def _parse_json(path: Path, raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(str(path), f"safetensors header is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise InputError(str(path), f"safetensors header must be a JSON object, got {type(header).__name__}")
    if not isinstance(header.get("__metadata__", {}), dict):
        raise InputError(str(path), "safetensors header: __metadata__ must be an object")
    return header


def _is_count(value) -> bool:
    """A JSON non-negative integer (bools are ints in Python, but not here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(path: Path, name: str, value) -> HeaderEntry:
    where = f"tensor {name!r}"
    if not isinstance(value, dict):
        raise InputError(str(path), f"{where}: header entry must be an object")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise InputError(str(path), f"{where} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise InputError(str(path), f"{where}: shape {shape!r} must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise InputError(str(path), f"{where}: data_offsets {offsets!r} must be [begin, end] with 0 <= begin <= end")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise InputError(
            str(path),
            f"{where}: data_offsets {offsets} hold {offsets[1] - offsets[0]} bytes but shape {shape} of {dtype} "
            f"needs {bits / 8:g}",
        )
    return HeaderEntry(name, dtype, tuple(shape), offsets[0], offsets[1])


def _check_tiling(path: Path, entries: dict[str, HeaderEntry], data_bytes: int) -> None:
    """Tensors must cover the data section exactly once: no overlap, no gap, nothing outside."""
    position, previous = 0, None
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if entry.end > data_bytes:
            raise InputError(
                str(path),
                f"tensor {entry.name!r}: data_offsets [{entry.begin}, {entry.end}] lie outside the file's "
                f"{data_bytes}-byte data section (truncated?)",
            )
        if entry.begin < position:
            raise InputError(str(path), f"tensor {entry.name!r} overlaps tensor {previous!r} (starts at byte "
                                        f"{entry.begin}, before {previous!r} ends at {position})")
        if entry.begin > position:
            raise InputError(str(path), f"tensor {entry.name!r} starts at byte {entry.begin}, leaving a gap after "
                                        f"byte {position}")
        position, previous = entry.end, entry.name
    if position != data_bytes:
        raise InputError(str(path), f"{data_bytes - position} bytes after the last tensor are not described by the header")
