"""The reference model against transformers' Exaone4ForCausalLM, loaded from the same files.

Each architecture in conftest.ARCHITECTURES is saved with `save_pretrained`,
loaded with our checkpoint loader, and run through a prefill longer than the
sliding window followed by decode steps with our explicit KV cache; transformers
runs the same tokens with its own cache. fp32 logits must agree to 1e-4.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import ARCHITECTURES, hf_config, random_hf_model, save_hf_checkpoint

from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.model import position_ids_from_mask

TOL = 1e-4
PREFILL, DECODE = 11, 6  # every architecture's window is <= 4: decode runs far past it


def hf_step(model, ids, mask, positions, cache):
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    return out.logits.float(), out.cache


@torch.no_grad()
def test_prefill_then_decode_matches_transformers(hf_checkpoint):
    hf_model, directory = hf_checkpoint
    ours = load_reference_model(Checkpoint.open(directory))
    vocab = hf_model.config.vocab_size
    ids = torch.randint(3, vocab, (1, PREFILL + DECODE), generator=torch.Generator().manual_seed(1))

    mask = torch.ones(1, PREFILL, dtype=torch.long)
    positions = torch.arange(PREFILL)[None]
    keys, values = ours.empty_cache(1)
    logits, keys, values = ours(ids[:, :PREFILL], mask, positions, keys, values)
    expected, cache = hf_step(hf_model, ids[:, :PREFILL], mask, positions, None)
    assert (logits - expected).abs().max() <= TOL

    for step in range(PREFILL, PREFILL + DECODE):
        mask = torch.ones(1, step + 1, dtype=torch.long)
        positions = torch.tensor([[step]])
        logits, keys, values = ours(ids[:, step : step + 1], mask, positions, keys, values)
        expected, cache = hf_step(hf_model, ids[:, step : step + 1], mask, positions, cache)
        assert (logits - expected).abs().max() <= TOL, f"decode step at position {step}"
        assert keys[0].shape == (1, hf_model.config.num_key_value_heads, step + 1, ours.config.head_dim)


@torch.no_grad()
def test_left_padded_batch_gives_each_row_its_own_logits(hf_checkpoint):
    hf_model, directory = hf_checkpoint
    ours = load_reference_model(Checkpoint.open(directory))
    gen = torch.Generator().manual_seed(2)
    long_row = torch.randint(3, hf_model.config.vocab_size, (9,), generator=gen)
    short_row = torch.randint(3, hf_model.config.vocab_size, (5,), generator=gen)
    pad = len(long_row) - len(short_row)
    ids = torch.stack((long_row, torch.cat((torch.zeros(pad, dtype=torch.long), short_row))))
    mask = torch.ones_like(ids)
    mask[1, :pad] = 0
    positions = position_ids_from_mask(mask, ids.shape[1])
    keys, values = ours.empty_cache(2)
    batch_logits, keys, values = ours(ids, mask, positions, keys, values)
    hf_logits, cache = hf_step(hf_model, ids, mask, positions, None)

    for row, tokens, start in ((0, long_row, 0), (1, short_row, pad)):
        alone_keys, alone_values = ours.empty_cache(1)
        n = len(tokens)
        alone, _, _ = ours(tokens[None], torch.ones(1, n, dtype=torch.long), torch.arange(n)[None], alone_keys, alone_values)
        assert (batch_logits[row, start:] - alone[0]).abs().max() <= TOL
        assert (hf_logits[row, start:] - alone[0]).abs().max() <= TOL

    # two decode steps on the padded batch, against transformers with its cache
    for step in range(2):
        next_ids = batch_logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat((mask, torch.ones(2, 1, dtype=torch.long)), dim=1)
        positions = positions[:, -1:] + 1
        batch_logits, keys, values = ours(next_ids, mask, positions, keys, values)
        hf_logits, cache = hf_step(hf_model, next_ids, mask, positions, cache)
        assert (batch_logits - hf_logits).abs().max() <= TOL, f"padded decode step {step}"


@torch.no_grad()
def test_kv_cache_holds_rotated_keys_only_on_rope_layers():
    """Trap 6: sliding layers cache keys after RoPE, global (NoPE) layers before any rotation."""
    hf_model = random_hf_model(hf_config(**ARCHITECTURES["hybrid_gqa"]))
    ours = load_reference_model(Checkpoint.open(save_hf_checkpoint(hf_model, _tmp())))
    ids = torch.randint(3, 97, (1, 7), generator=torch.Generator().manual_seed(3))
    keys, values = ours.empty_cache(1)
    _, keys, _ = ours(ids, torch.ones_like(ids), torch.arange(7)[None], keys, values)
    x = ours.model.embed_tokens(ids)
    layer0 = ours.model.layers[0].self_attn  # sliding: rotated
    unrotated0 = layer0._per_head_norm(layer0.k_proj(x), layer0.k_norm).view(1, 7, -1, ours.config.head_dim)
    assert not torch.allclose(keys[0], unrotated0.transpose(1, 2), atol=1e-3)
    assert torch.allclose(keys[0][:, :, 0], unrotated0.transpose(1, 2)[:, :, 0], atol=1e-6)  # position 0: angle 0

    # layer 3 is global: its cached keys are k_norm(k_proj(h)) with no rotation, checked against transformers' cache
    out = hf_model(input_ids=ids, use_cache=True)
    hf_keys = out.cache.layers[3].keys
    assert (keys[3] - hf_keys).abs().max() <= TOL
    hf_sliding = out.cache.layers[0].keys  # transformers may keep only the window
    assert (keys[0][:, :, -hf_sliding.shape[2] :] - hf_sliding).abs().max() <= TOL


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="exaone4-trap6-"))


@pytest.mark.parametrize("storage", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_half_precision_checkpoints_load_and_convert(tmp_path, storage):
    """bf16 / fp16 on disk load into an fp32 model with exactly the stored values."""
    hf32 = random_hf_model(hf_config(**ARCHITECTURES["hybrid_gqa"]))
    for param in hf32.parameters():  # the fp32 model holds exactly the values the half file stores
        param.copy_(param.to(storage).float())
    stored = copy.deepcopy(hf32).to(storage)
    ckpt = Checkpoint.open(save_hf_checkpoint(stored, tmp_path))
    assert ckpt.dtype == {torch.bfloat16: "BF16", torch.float16: "F16"}[storage]
    ours = load_reference_model(ckpt, dtype=torch.float32)
    ids = torch.randint(3, 97, (1, 9), generator=torch.Generator().manual_seed(4))
    keys, values = ours.empty_cache(1)
    logits, _, _ = ours(ids, torch.ones_like(ids), torch.arange(9)[None], keys, values)
    assert (logits - hf32(input_ids=ids).logits).abs().max() <= TOL


@torch.no_grad()
def test_sharded_checkpoint_loads(tmp_path):
    hf_model = random_hf_model(hf_config(**ARCHITECTURES["hybrid_gqa"]))
    save_hf_checkpoint(hf_model, tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    ckpt = Checkpoint.open(tmp_path)
    assert len(ckpt.files) > 1
    ours = load_reference_model(ckpt)
    ids = torch.randint(3, 97, (1, 6), generator=torch.Generator().manual_seed(5))
    keys, values = ours.empty_cache(1)
    logits, _, _ = ours(ids, torch.ones_like(ids), torch.arange(6)[None], keys, values)
    assert (logits - hf_model(input_ids=ids).logits).abs().max() <= TOL
