"""Chunked weight streaming: what tofile writes equals the converted (transposed) tensor."""

from __future__ import annotations

import io

import numpy as np
import onnx_ir as ir
import pytest
import torch
from safetensors.torch import save_file

from exaone4.exporter import stream
from exaone4.exporter.errors import InputError
from exaone4.exporter.stream import StreamedTensor, locate_tensors, to_numpy


@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("target", [torch.float32, torch.float16])
@pytest.mark.parametrize("transpose", [False, True])
def test_tofile_in_small_blocks_equals_whole_tensor(tmp_path, monkeypatch, stored, target, transpose):
    monkeypatch.setattr(stream, "CHUNK_BYTES", 100)  # a few rows per block: exercises the strided path
    weight = torch.randn(37, 23, generator=torch.Generator().manual_seed(0)).to(stored)
    save_file({"a.weight": torch.ones(5), "w": weight}, str(tmp_path / "x.safetensors"))
    location = locate_tensors(tmp_path / "x.safetensors")["w"]
    ir_dtype = ir.DataType.FLOAT if target == torch.float32 else ir.DataType.FLOAT16
    tensor = StreamedTensor(location, target, transpose, name="w", ir_dtype=ir_dtype)
    expected = weight.to(target)
    expected = expected.t() if transpose else expected
    buffer = io.BytesIO()
    buffer.write(b"prefix")  # writing starts at the file's current offset
    tensor.tofile(buffer)
    written = np.frombuffer(buffer.getvalue()[6:], dtype=to_numpy(expected).dtype).reshape(expected.shape)
    np.testing.assert_array_equal(written, to_numpy(expected.contiguous()))
    assert buffer.tell() == 6 + expected.numel() * target.itemsize
    np.testing.assert_array_equal(tensor.numpy(), to_numpy(expected.contiguous()))
    assert list(tensor.shape) == list(expected.shape)


def test_non_finite_weights_are_refused_while_streaming(tmp_path):
    weight = torch.ones(4, 4)
    weight[2, 1] = float("inf")
    save_file({"w": weight}, str(tmp_path / "x.safetensors"))
    tensor = StreamedTensor(locate_tensors(tmp_path / "x.safetensors")["w"], torch.float32, False, "w", ir.DataType.FLOAT)
    with pytest.raises(InputError, match="'w' holds NaN or Inf"):
        tensor.tofile(io.BytesIO())
