"""Checkpoint loading: what is accepted, and every refusal naming its file and problem."""

from __future__ import annotations

import os
import struct

import pytest
import torch
from conftest import SMALL_CONFIG, write_json, write_random_checkpoint
from safetensors.torch import load_file, save_file

from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.errors import InputError
from exaone4.exporter.load import load_reference_model


def test_tied_checkpoint_without_lm_head_loads(tmp_path):
    ckpt = Checkpoint.open(write_random_checkpoint(tmp_path))
    assert not ckpt.has("lm_head.weight")
    model = load_reference_model(ckpt)
    assert model.lm_head.weight is model.model.embed_tokens.weight


@pytest.mark.hardening("checkpoint (library)", tried="untied checkpoint missing lm_head", expect="InputError naming the file or field")
def test_untied_checkpoint_needs_lm_head(tmp_path):
    write_random_checkpoint(tmp_path, dict(SMALL_CONFIG, tie_word_embeddings=False))
    assert load_reference_model(Checkpoint.open(tmp_path)).lm_head.weight.shape == (64, 32)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match="missing tensors: lm_head.weight"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", tried="config.json missing", expect="InputError naming the file or field")
def test_missing_config(tmp_path):
    write_random_checkpoint(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(InputError, match="config.json: config.json not found"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", tried="pickle-only directory", expect="InputError naming the file or field")
def test_pickle_only_directory_is_refused_without_reading(tmp_path):
    write_json(tmp_path / "config.json", SMALL_CONFIG)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 not even read")
    with pytest.raises(InputError, match="pytorch_model.bin: pickle checkpoints are refused"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", tried="truncated safetensors body", expect="InputError naming the file or field")
def test_truncated_safetensors(tmp_path):
    write_random_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match=r"model.safetensors: tensor 'model.norm.weight': data_offsets .* lie outside "
                                         r"the file's 70300-byte data section \(truncated\?\)"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", tried="header length larger than the file", expect="InputError naming the file or field")
def test_header_length_larger_than_file(tmp_path):
    write_random_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", len(data) * 10) + data[8:])
    with pytest.raises(InputError, match=r"model.safetensors: header length \d+ exceeds the file"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", tried="tensor of the wrong shape", expect="InputError naming the file or field")
def test_wrong_shape_is_named(tmp_path):
    write_random_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    tensors["model.layers.1.mlp.up_proj.weight"] = torch.zeros(47, 32)
    save_file(tensors, str(path))
    with pytest.raises(InputError, match=r"'model.layers.1.mlp.up_proj.weight' has shape \[47, 32\], expected \[48, 32\]"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", tried="missing tensor, then extra tensor", expect="InputError naming the file or field")
def test_missing_and_extra_tensors_are_named(tmp_path):
    write_random_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    del tensors["model.layers.0.self_attn.k_norm.weight"]
    save_file(tensors, str(path))
    with pytest.raises(InputError, match="missing tensors: model.layers.0.self_attn.k_norm.weight"):
        Checkpoint.open(tmp_path)
    tensors["model.layers.0.self_attn.k_norm.weight"] = torch.ones(8)
    tensors["model.layers.2.mlp.up_proj.weight"] = torch.ones(48, 32)
    save_file(tensors, str(path))
    with pytest.raises(InputError, match="unexpected tensor 'model.layers.2.mlp.up_proj.weight'"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", tried="unsupported dtype (I32)", expect="InputError naming the file or field")
def test_unsupported_dtype_is_named(tmp_path):
    write_random_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    tensors["model.norm.weight"] = tensors["model.norm.weight"].to(torch.int32)
    save_file(tensors, str(path))
    with pytest.raises(InputError, match="'model.norm.weight' has dtype I32"):
        Checkpoint.open(tmp_path)


def _shard(tmp_path, weight_map):
    write_random_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "shard-1.safetensors")
    write_json(tmp_path / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})


@pytest.mark.hardening("checkpoint (library)", tried="shard named in the index is missing", expect="InputError naming the file or field")
def test_shard_named_in_index_but_absent(tmp_path):
    _shard(tmp_path, {"model.norm.weight": "shard-1.safetensors", "model.embed_tokens.weight": "shard-2.safetensors"})
    with pytest.raises(InputError, match="shard-2.safetensors: shard named in the index is missing"):
        Checkpoint.open(tmp_path)


@pytest.mark.hardening("checkpoint (library)", expect="InputError naming the file or field")
@pytest.mark.parametrize("target", ["../outside.safetensors", "/etc/passwd", "link.safetensors"])
def test_shard_outside_the_checkpoint_is_refused(tmp_path, target):
    ckpt_dir = tmp_path / "ckpt"
    _shard(ckpt_dir, {"model.norm.weight": target})
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    os.symlink(tmp_path / "outside.safetensors", ckpt_dir / "link.safetensors")
    with pytest.raises(InputError, match="lies outside the checkpoint directory"):
        Checkpoint.open(ckpt_dir)


@pytest.mark.hardening("checkpoint (library)", tried="NaN weight, loading the reference model", expect="InputError naming the file or field")
def test_nan_weights_are_reported(tmp_path):
    write_random_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    tensors["model.layers.0.mlp.down_proj.weight"][3, 4] = float("nan")
    save_file(tensors, str(path))
    with pytest.raises(InputError, match="'model.layers.0.mlp.down_proj.weight' holds NaN or Inf"):
        load_reference_model(Checkpoint.open(tmp_path))


def test_file_hashes_cover_config_and_weights(tmp_path):
    ckpt = Checkpoint.open(write_random_checkpoint(tmp_path))
    hashes = ckpt.file_hashes()
    assert set(hashes) == {"config.json", "model.safetensors"} and all(len(h) == 64 for h in hashes.values())
