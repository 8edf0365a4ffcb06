"""The bundled tiny EXAONE 4: it has learned something, and transformers reads it as we do."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.config import LayerKind
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.tiny import TINY_DIR

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def tiny():
    return load_reference_model(Checkpoint.open(TINY_DIR))


def test_layout_is_real_exaone4_at_toy_size():
    ckpt = Checkpoint.open(TINY_DIR)
    config = ckpt.config
    assert config.layer_kinds.count(LayerKind.SLIDING) == 3 * config.layer_kinds.count(LayerKind.GLOBAL)
    assert config.num_kv_heads < config.num_heads and config.tie_word_embeddings
    assert config.rope.kind == "llama3" and config.sliding_window < 32
    assert ckpt.size_bytes <= 20 * 2**20
    assert sum(p.stat().st_size for p in TINY_DIR.iterdir() if p.is_file()) <= 20 * 2**20


@torch.no_grad()
def test_heldout_loss_far_below_uniform(tiny):
    """Loss on standard-library files the training never saw (split by a hash of their path)."""
    sys.path.insert(0, str(SCRIPTS))
    import tiny_tokenizer

    _, heldout = tiny_tokenizer.stdlib_corpus()
    tokenizer = ChatTokenizer.open(TINY_DIR)
    ids = torch.tensor([t for text in heldout[:8] for t in tokenizer.encode(text)][: 8 * 128 + 1])
    windows = ids[:-1].view(8, 128)
    targets = ids[1:].view(8, 128)
    keys, values = tiny.empty_cache(8)
    logits, _, _ = tiny(windows, torch.ones_like(windows), torch.arange(128).expand(8, 128), keys, values)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()
    uniform = math.log(tiny.config.vocab_size)
    print(f"held-out loss {loss:.3f} vs uniform {uniform:.3f}")
    assert loss < 0.6 * uniform


@torch.no_grad()
def test_transformers_loads_the_directory_and_agrees(tiny):
    transformers = pytest.importorskip("transformers")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(TINY_DIR, dtype=torch.float32).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(TINY_DIR)
    ours = ChatTokenizer.open(TINY_DIR)
    messages = [{"role": "user", "content": "Show me def dumps"}]
    for thinking in (False, True):
        assert ours.render(messages, enable_thinking=thinking) == hf_tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
    text = ours.render(messages)
    ids = ours.encode(text)
    assert ids == hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([ids])
    keys, values = tiny.empty_cache(1)
    logits, _, _ = tiny(input_ids, torch.ones_like(input_ids), torch.arange(len(ids))[None], keys, values)
    expected = hf_model(input_ids=input_ids).logits
    assert len(ids) > tiny.config.sliding_window  # the prompt crosses the window
    assert (logits - expected).abs().max() <= 1e-4


def test_special_tokens_are_single_ids():
    tokenizer = ChatTokenizer.open(TINY_DIR)
    for token, expected in (("[PAD]", 0), ("[BOS]", 1), ("[|endofturn|]", 2)):
        assert tokenizer.encode(token) == [expected]
    for token in ("[|system|]", "[|user|]", "[|assistant|]", "<think>", "</think>", "<tool_call>", "</tool_call>"):
        assert len(tokenizer.encode(token)) == 1


def test_training_record_is_present():
    record = json.loads((TINY_DIR / "training.json").read_text())
    assert record["heldout_loss"] < record["uniform_loss"]
