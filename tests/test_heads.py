"""The four non-causal EXAONE 4 classes: config, checkpoint loading, refusals, and the reference heads
against transformers' own `Exaone4For*` classes on padded batches (left, right, none, past the window)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ARCHITECTURES, SMALL_CONFIG, write_random_checkpoint
from head_models import HEAD_CLASSES, head_checkpoint, max_error, padded_batch, transformers_outputs

from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.config import parse_config
from exaone4.exporter.errors import InputError
from exaone4.exporter.heads import Head
from exaone4.exporter.load import load_reference_model

TOL = 1e-4


def reference_outputs(model, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in model.predict(torch.from_numpy(ids), torch.from_numpy(mask)).items()}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("cls", HEAD_CLASSES)
def test_reference_head_matches_transformers_on_a_padded_batch(cls, architecture, tmp_path):
    hf_model, directory = head_checkpoint(cls, architecture, tmp_path)
    checkpoint = Checkpoint.open(directory)
    assert checkpoint.config.head.head is Head(cls)
    ours = load_reference_model(checkpoint)
    ids, mask = padded_batch(hf_model.config.vocab_size)
    expected = transformers_outputs(hf_model, ids, mask)
    assert max_error(expected, reference_outputs(ours, ids, mask), mask) <= TOL


def test_sequence_classification_scores_the_last_non_padding_token(tmp_path):
    """Each row's logits are those of the row alone, whichever side it is padded on; pooling the
    last position instead (what a wrong pad handling does) is caught by the same comparison."""
    hf_model, directory = head_checkpoint("Exaone4ForSequenceClassification", "hybrid_gqa", tmp_path)
    ours = load_reference_model(Checkpoint.open(directory))
    ids, mask = padded_batch(hf_model.config.vocab_size)
    batch = reference_outputs(ours, ids, mask)["logits"]
    for row in range(ids.shape[0]):
        real = ids[row][mask[row].astype(bool)][None]
        alone = reference_outputs(ours, real, np.ones_like(real))["logits"]
        assert np.abs(batch[row] - alone[0]).max() <= TOL
    last_position = ours.score(ours.model.encode(torch.from_numpy(ids), torch.from_numpy(mask))[:, -1]).detach().numpy()
    assert np.abs(last_position[2] - batch[2]).max() > 1e-2  # the right-padded row: a broken pooling shows


def test_head_config_reads_labels_and_problem_type():
    config = parse_config({**SMALL_CONFIG, "architectures": ["Exaone4ForSequenceClassification"],
                           "id2label": {"0": "NEG", "1": "POS"}, "label2id": {"NEG": 0, "POS": 1},
                           "problem_type": "single_label_classification"})
    head = config.head
    assert head.head is Head.SEQUENCE_CLASSIFICATION and head.num_labels == 2 and head.label2id == {"NEG": 0, "POS": 1}
    assert head.to_summary()["id2label"] == {0: "NEG", 1: "POS"} and head.layout.task == "text-classification"
    only_count = parse_config({**SMALL_CONFIG, "architectures": ["Exaone4ForTokenClassification"], "num_labels": 3})
    assert only_count.head.id2label == ("LABEL_0", "LABEL_1", "LABEL_2")
    assert parse_config(SMALL_CONFIG).head.head is Head.CAUSAL_LM  # no architectures: a causal LM, as before


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["Exaone4ForMaskedLM"]}, "architectures: \\['Exaone4ForMaskedLM'\\] is not one of"),
    ({"architectures": "Exaone4Model"}, "architectures: must be a list"),
    ({"id2label": {"0": "A", "2": "B"}}, "id2label: indices must be 0..1"),
    ({"id2label": {"0": "A", "1": "A"}}, "id2label: label names must be distinct"),
    ({"label2id": {"A": 1, "B": 0}}, "label2id: .* is not the inverse of id2label"),
    ({"num_labels": 3}, "num_labels: is 3 but id2label has 2 labels"),
    ({"problem_type": "ranking"}, "problem_type: 'ranking' is not one of"),
    ({"id2label": None, "label2id": None}, "id2label: is missing"),
])
@pytest.mark.hardening("config", tried="classifier config.json with an unknown architecture, gapped or duplicate labels, "
                       "label2id not inverting id2label, num_labels disagreeing, an unknown problem_type",
                       expect="InputError naming config.json and the field")
def test_bad_head_config_is_refused_naming_the_field(change, message):
    raw = {**SMALL_CONFIG, "architectures": ["Exaone4ForSequenceClassification"], "id2label": {"0": "A", "1": "B"},
           "label2id": {"A": 0, "B": 1}, **change}
    with pytest.raises(InputError, match=f"config.json: {message}"):
        parse_config({k: v for k, v in raw.items() if v is not None})


@pytest.mark.parametrize("cls", HEAD_CLASSES)
def test_head_checkpoints_load_with_their_own_tensor_names(cls, tmp_path):
    _, directory = head_checkpoint(cls, "all_global_mqa_tied", tmp_path)
    names = set(Checkpoint.open(directory).tensors)
    prefix = {"Exaone4Model": "", "Exaone4ForQuestionAnswering": "transformer."}.get(cls, "model.")
    assert f"{prefix}embed_tokens.weight" in names and "lm_head.weight" not in names


@pytest.mark.parametrize("cls, tensor", [
    ("Exaone4ForSequenceClassification", "score.weight"),
    ("Exaone4ForTokenClassification", "score.weight, score.bias"),
    ("Exaone4ForQuestionAnswering", "qa_outputs.weight, qa_outputs.bias"),
])
@pytest.mark.hardening("checkpoints", tried="a causal-LM checkpoint whose config.json names a head class",
                       expect="InputError naming the missing head tensor")
def test_a_causal_lm_checkpoint_asked_for_a_head_is_refused_naming_the_tensor(cls, tensor, tmp_path):
    directory = write_random_checkpoint(tmp_path, {**SMALL_CONFIG, "tie_word_embeddings": False})
    raw = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**raw, "architectures": [cls], "num_labels": 2}))
    if cls == "Exaone4ForQuestionAnswering":
        message = "missing the question-answering head tensor"
    else:
        message = "missing the .*-classification head tensor"
    with pytest.raises(InputError, match=f"{message}\\(s\\) {tensor} that config.json's architectures \\({cls}\\)"):
        Checkpoint.open(directory)


@pytest.mark.hardening("checkpoints", tried="a head checkpoint missing its head tensor, or carrying an lm_head",
                       expect="InputError naming the tensor")
def test_a_head_checkpoint_missing_its_head_tensor_or_with_an_lm_head_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _, directory = head_checkpoint("Exaone4ForSequenceClassification", "hybrid_gqa", tmp_path)
    tensors = load_file(directory / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "score.weight"}, directory / "model.safetensors")
    with pytest.raises(InputError, match="head tensor\\(s\\) score.weight"):
        Checkpoint.open(directory)
    save_file({**tensors, "lm_head.weight": tensors["model.embed_tokens.weight"].clone()}, directory / "model.safetensors")
    with pytest.raises(InputError, match="unexpected tensor 'lm_head.weight'"):
        Checkpoint.open(directory)
