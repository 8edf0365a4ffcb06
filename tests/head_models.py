"""Random transformers models of the four non-causal EXAONE 4 classes, and the padded batches they are tested on.

    model, directory = head_checkpoint("Exaone4ForSequenceClassification", "hybrid_gqa", tmp_path)
    ids, mask = padded_batch(model.config.vocab_size, window=4)
    expected = transformers_outputs(model, ids, mask)       # {output name: array}, as an export names them
    assert max_error(expected, ours, mask) <= 1e-4           # only positions a real token holds

Checkpoints carry the bundled tokenizer (vocabulary 2048), as a fine-tuned checkpoint would.
The batch mixes a row with no padding (longer than the hybrid configs' window of 4),
a left-padded row and a right-padded one, so both padding sides and the sliding
window are crossed in one call; padding uses `pad_token_id` 0 and real tokens never do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from conftest import ARCHITECTURES, hf_config, random_hf_model, save_hf_checkpoint

from exaone4.exporter.tiny import TINY_DIR

HEAD_CLASSES = (
    "Exaone4Model",
    "Exaone4ForSequenceClassification",
    "Exaone4ForTokenClassification",
    "Exaone4ForQuestionAnswering",
)
LABELS = {"id2label": {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "NEUTRAL": 1, "POSITIVE": 2}}
TAGS = {"id2label": {0: "O", 1: "B-PER", 2: "I-PER"}, "label2id": {"O": 0, "B-PER": 1, "I-PER": 2}}
VOCAB = 2048  # the bundled tokenizer's, so the checkpoints carry it (for serving) and any text encodes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PAD = 0
ROW_LENGTHS = (11, 7, 5)  # no padding (past the window), left-padded, right-padded


def head_checkpoint(cls: str, architecture: str, directory: Path, seed: int = 0, **overrides):
    """(transformers model of class `cls`, its save_pretrained directory) on one of conftest.ARCHITECTURES."""
    labels = TAGS if cls == "Exaone4ForTokenClassification" else LABELS
    config = hf_config(**{"vocab_size": VOCAB, **ARCHITECTURES[architecture], **labels, **overrides})
    model = random_hf_model(config, seed=seed, cls=cls)
    directory = save_hf_checkpoint(model, Path(directory))
    for name in TOKENIZER_FILES:  # the bundled tokenizer, as a fine-tuned checkpoint carries its own
        shutil.copyfile(TINY_DIR / name, directory / name)
    return model, directory


def padded_batch(vocab: int, seed: int = 1, lengths=ROW_LENGTHS, sides=("none", "left", "right")):
    """input_ids, attention_mask [len(lengths), max(lengths)] int64, each row padded on its side."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.full((len(lengths), width), PAD, np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for row, (length, side) in enumerate(zip(lengths, sides)):
        start = width - length if side == "left" else 0
        ids[row, start : start + length] = rng.integers(3, vocab, length)
        mask[row, start : start + length] = 1
    return ids, mask


@torch.no_grad()
def transformers_outputs(model, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """transformers' own outputs, as a user calls the model (ids and mask; it numbers positions itself)."""
    out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    names = {"last_hidden_state": "last_hidden_state", "logits": "logits", "start_logits": "start_logits",
             "end_logits": "end_logits"}
    return {name: getattr(out, attr).float().numpy() for name, attr in names.items() if getattr(out, attr, None) is not None}


def max_error(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], mask: np.ndarray) -> float:
    """Largest |difference| over every output, at the positions real tokens hold (all rows for pooled logits)."""
    assert set(expected) == set(got), (sorted(expected), sorted(got))
    worst = 0.0
    for name, want in expected.items():
        have = np.asarray(got[name], np.float64)
        if want.ndim >= 2 and want.shape[1] == mask.shape[1] and want.shape[:2] == mask.shape:
            want, have = want[mask.astype(bool)], have[mask.astype(bool)]
        worst = max(worst, float(np.abs(want - have).max()))
    return worst
