"""Stream checkpoint tensors into ONNX external data in bounded chunks.

`StreamedTensor` is an `onnx_ir.LazyTensor` whose `tofile` (what onnx_ir calls
when it writes external data) reads the source tensor from its safetensors file
a block of rows at a time with plain `readinto` (no mmap, so no file pages count
against the process), converts the block's dtype and writes it out, transposed
when the graph wants [in, out] instead of the checkpoint's [out, in]. Memory
stays at one block (CHUNK_BYTES) whatever the tensor's size, so exporting a 32B
checkpoint costs no more memory than exporting a 1B one.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch

from .errors import InputError

CHUNK_BYTES = 64 << 20
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A torch tensor as numpy; bf16 goes through ml_dtypes' bfloat16."""
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _raw(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    return memoryview(np.ascontiguousarray(array).view(np.uint8).reshape(-1))


@dataclass(frozen=True)
class TensorLocation:
    """Where a tensor's bytes are in a safetensors file."""

    path: Path
    offset: int  # absolute byte offset of the first element
    dtype: torch.dtype
    shape: tuple[int, ...]
    name: str = ""  # the tensor's name in the checkpoint, for error messages

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read_rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of the tensor, in its stored dtype."""
        buffer = bytearray((stop - start) * self.row_bytes)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            if f.readinto(buffer) != len(buffer):
                raise OSError(f"{self.path}: short read")
        flat = torch.frombuffer(buffer, dtype=self.dtype) if buffer else torch.empty(0, dtype=self.dtype)
        return flat.view(stop - start, *self.shape[1:])


def locate_tensors(path: Path) -> dict[str, TensorLocation]:
    """Parse a safetensors header (already validated by the checkpoint loader)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    base = 8 + header_len
    return {
        name: TensorLocation(Path(path), base + info["data_offsets"][0], SAFETENSORS_DTYPES[info["dtype"]], tuple(info["shape"]),
                             name=name)
        for name, info in header.items()
        if name != "__metadata__"
    }


def input_error_in(exc: BaseException) -> InputError | None:
    """The InputError behind `exc`, if any.

    onnx_ir wraps whatever a tensor raises while the model is serialized inline
    (small models) in its own SerdeError, so a NaN found by `_blocks` would reach
    the user as a traceback; the saver unwraps it with this.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class StreamedTensor(ir.LazyTensor):
    """A checkpoint tensor, converted to `dtype` and optionally transposed, written in chunks."""

    def __init__(self, source: TensorLocation, dtype: torch.dtype, transpose: bool, name: str, ir_dtype: ir.DataType,
                 on_written=None):
        shape = source.shape[::-1] if transpose else source.shape
        super().__init__(self._whole, dtype=ir_dtype, shape=ir.Shape(list(shape)), name=name)
        self.source = source
        self.target_dtype = dtype
        self.transpose = transpose
        self.on_written = on_written  # called with the tensor's name once it is in the file

    def _rows_per_block(self) -> int:
        return max(1, CHUNK_BYTES // max(self.source.row_bytes, 1))

    def _blocks(self):
        rows = self.source.shape[0]
        step = self._rows_per_block()
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            block = self.source.read_rows(start, stop).to(self.target_dtype)
            if not torch.isfinite(block).all():
                raise InputError(str(self.source.path), f"tensor {self.source.name or self.name!r} holds NaN or Inf values")
            yield start, stop, block

    def _whole(self) -> ir.Tensor:
        blocks = [block for _, _, block in self._blocks()]
        tensor = torch.cat(blocks) if blocks else torch.empty(self.source.shape, dtype=self.target_dtype)
        if self.transpose:
            tensor = tensor.t()
        result = ir.tensor(to_numpy(tensor.contiguous()), name=self.name)
        if self.on_written:  # inline saves (small models) serialize the whole tensor instead of tofile
            self.on_written(self.name)
        return result

    def tofile(self, file) -> None:
        self._write(file)
        if self.on_written:
            self.on_written(self.name)

    def _write(self, file) -> None:
        if not self.transpose or len(self.source.shape) != 2:
            for _, _, block in self._blocks():
                file.write(_raw(to_numpy(block.contiguous())))
            return
        # transposed: source rows [start, stop) become columns of the output [in, out]
        out_rows, out_cols = self.source.shape[1], self.source.shape[0]
        itemsize = self.target_dtype.itemsize
        begin = file.tell()
        for start, stop, block in self._blocks():
            columns = to_numpy(block.t().contiguous())  # [in, stop - start]
            if start == 0 and stop == out_cols:
                file.write(_raw(columns))
                continue
            for row in range(out_rows):
                file.seek(begin + (row * out_cols + start) * itemsize)
                file.write(_raw(columns[row]))
        file.seek(begin + out_rows * out_cols * itemsize)
