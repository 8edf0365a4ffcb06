"""Which EXAONE 4 model a checkpoint holds, read from config.json's `architectures`.

transformers ships five EXAONE 4 classes over one decoder: the base model
(`last_hidden_state`), the causal LM, and three heads (sequence classification,
token classification, extractive question answering). This module says, for each,
what its checkpoint holds besides the decoder (tensor names and shapes, the prefix
of the decoder's names) and what its export outputs; `HeadConfig` carries the
labels (`num_labels`, `id2label` / `label2id`, `problem_type`) into manifests and
serving. A config without `architectures` is a causal LM, as before heads existed.

The reference modules are in exporter/model.py (causal LM, base) and
exporter/model_heads.py; the optimum task names and IO names follow optimum's
conventions for these tasks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .contract import END_LOGITS, LAST_HIDDEN_STATE, LOGITS, START_LOGITS
from .errors import InputError

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class Head(enum.Enum):
    """A transformers EXAONE 4 class; the value is its name in `architectures`."""

    CAUSAL_LM = "Exaone4ForCausalLM"
    BASE = "Exaone4Model"
    SEQUENCE_CLASSIFICATION = "Exaone4ForSequenceClassification"
    TOKEN_CLASSIFICATION = "Exaone4ForTokenClassification"
    QUESTION_ANSWERING = "Exaone4ForQuestionAnswering"


@dataclass(frozen=True)
class HeadLayout:
    """What differs between the classes: decoder name prefix, export outputs, optimum's task name."""

    prefix: str  # of the decoder's tensor names in the checkpoint ("model.", "transformer." or none)
    outputs: tuple[str, ...]  # graph outputs of an export (inputs: input_ids, attention_mask)
    task: str


LAYOUTS = {
    Head.CAUSAL_LM: HeadLayout("model.", (LOGITS,), "text-generation"),
    Head.BASE: HeadLayout("", (LAST_HIDDEN_STATE,), "feature-extraction"),
    Head.SEQUENCE_CLASSIFICATION: HeadLayout("model.", (LOGITS,), "text-classification"),
    Head.TOKEN_CLASSIFICATION: HeadLayout("model.", (LOGITS,), "token-classification"),
    Head.QUESTION_ANSWERING: HeadLayout("transformer.", (START_LOGITS, END_LOGITS), "question-answering"),
}
CLASSIFIERS = (Head.SEQUENCE_CLASSIFICATION, Head.TOKEN_CLASSIFICATION)


@dataclass(frozen=True)
class HeadConfig:
    """The head of a checkpoint and, for classifiers, its labels.

    id2label: label names by class index (num_labels of them). problem_type: as in
    transformers' config (None: single-label, or regression when num_labels is 1).
    score_bias: token classification's `score.bias` (transformers' `token_classification_bias`).
    """

    head: Head = Head.CAUSAL_LM
    id2label: tuple[str, ...] = ()
    problem_type: str | None = None
    score_bias: bool = True

    @property
    def layout(self) -> HeadLayout:
        return LAYOUTS[self.head]

    @property
    def is_causal_lm(self) -> bool:
        return self.head is Head.CAUSAL_LM

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.id2label)}

    def head_tensors(self, hidden_size: int) -> dict[str, tuple[int, ...]]:
        """The tensors a checkpoint holds besides the decoder's (a causal LM's lm_head: checkpoint.py)."""
        if self.head is Head.SEQUENCE_CLASSIFICATION:
            return {"score.weight": (self.num_labels, hidden_size)}
        if self.head is Head.TOKEN_CLASSIFICATION:
            bias = {"score.bias": (self.num_labels,)} if self.score_bias else {}
            return {"score.weight": (self.num_labels, hidden_size), **bias}
        if self.head is Head.QUESTION_ANSWERING:
            return {"qa_outputs.weight": (2, hidden_size), "qa_outputs.bias": (2,)}
        return {}

    def to_summary(self) -> dict[str, Any]:
        """For manifests and `inspect`: the class, the task, and the labels of a classifier."""
        summary: dict[str, Any] = {"architecture": self.head.value, "task": self.layout.task}
        if self.head in CLASSIFIERS:
            summary.update(num_labels=self.num_labels, id2label=dict(enumerate(self.id2label)),
                           label2id=self.label2id, problem_type=self.problem_type)
        return summary


def require_causal_lm(config_head: HeadConfig, where: str, what: str) -> None:
    """Refuse, in one line, a command that needs a causal LM (generation, KV cache options) on a head."""
    if not config_head.is_causal_lm:
        raise InputError(where, f"{what} needs an {Head.CAUSAL_LM.value}; this model is an {config_head.head.value} "
                         f"({config_head.layout.task}: one forward, no KV cache)")


# --------------------------------------------------------------------------- parsing


def parse_head(raw: dict, source: str) -> HeadConfig:
    """The head named by `architectures` (none: the causal LM), with labels for classifiers."""
    head = _head(raw.get("architectures"), source)
    if head not in CLASSIFIERS:
        return HeadConfig(head)
    score_bias = raw.get("token_classification_bias", True)
    if not isinstance(score_bias, bool):
        raise InputError(f"{source}: token_classification_bias", f"must be true or false, got {_short(score_bias)}")
    problem = raw.get("problem_type")
    if problem is not None and problem not in PROBLEM_TYPES:
        raise InputError(f"{source}: problem_type", f"{_short(problem)} is not one of {', '.join(PROBLEM_TYPES)}")
    return HeadConfig(head, _labels(raw, source), problem, score_bias)


def _head(architectures: Any, source: str) -> Head:
    if architectures is None:
        return Head.CAUSAL_LM
    known = {head.value: head for head in Head}
    if not isinstance(architectures, list) or not architectures:
        raise InputError(f"{source}: architectures", f"must be a list naming one of {', '.join(known)}")
    names = set(architectures)
    if len(names) != 1 or not isinstance(architectures[0], str) or architectures[0] not in known:
        raise InputError(f"{source}: architectures", f"{_short(architectures)} is not one of {', '.join(known)}")
    return known[architectures[0]]


def _labels(raw: dict, source: str) -> tuple[str, ...]:
    """id2label as a tuple by index; num_labels alone gives transformers' LABEL_i names; label2id must agree."""
    id2label, count = raw.get("id2label"), raw.get("num_labels")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count <= 0):
        raise InputError(f"{source}: num_labels", f"must be a positive integer, got {_short(count)}")
    if id2label is None:
        if count is None:
            raise InputError(f"{source}: id2label", "is missing: a classifier needs its labels (or num_labels)")
        labels = tuple(f"LABEL_{i}" for i in range(count))
    else:
        labels = _id2label(id2label, source)
        if count is not None and count != len(labels):
            raise InputError(f"{source}: num_labels", f"is {count} but id2label has {len(labels)} labels")
    _check_label2id(raw.get("label2id"), labels, source)
    return labels


def _id2label(value: Any, source: str) -> tuple[str, ...]:
    where = f"{source}: id2label"
    if not isinstance(value, dict) or not value:
        raise InputError(where, f"must map class indices 0..n-1 to label names, got {_short(value)}")
    by_index = {}
    for key, label in value.items():
        index = int(key) if (isinstance(key, str) and key.isdigit()) or type(key) is int else None
        if index is None or not isinstance(label, str) or not label:
            raise InputError(where, f"entry {_short(key)}: {_short(label)} is not an index and a label name")
        by_index[index] = label
    if sorted(by_index) != list(range(len(by_index))):
        raise InputError(where, f"indices must be 0..{len(by_index) - 1}, got {sorted(by_index)[:8]}")
    if len(set(by_index.values())) != len(by_index):
        raise InputError(where, "label names must be distinct")
    return tuple(by_index[i] for i in range(len(by_index)))


def _check_label2id(value: Any, labels: tuple[str, ...], source: str) -> None:
    if value is None:
        return
    expected = {label: i for i, label in enumerate(labels)}
    if not isinstance(value, dict) or value != expected:
        raise InputError(f"{source}: label2id", f"{_short(value)} is not the inverse of id2label {_short(expected)}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
