"""From text to a head's answer and back, torch-free: what the Triton head model runs (numpy, tokenizers).

    tokenizer = HeadTokenizer.open(directory, pad_token_id)
    batch = tokenizer.batch([tokenizer.encode(text) for text in texts])    # right-padded ids and mask
    label, scores = classify(logits[row], labels, problem_type)              # text classification
    entities = word_entities(text, encodings[row], logits[row], labels)      # token classification, per word
    answer, score = best_answer(context, encoding, start[row], end[row])     # extractive QA
    vector = embed(states[row, : len(ids)], pooling, normalize)               # feature extraction

The rules are transformers' pipelines' (text-classification's score function,
token-classification's word aggregation "first" and entity grouping, the classic
question-answering span search), written over the tokenizer's own offsets, so a
served answer equals what those pipelines give for the same model and tokenizer.
Feature extraction serves the pipeline's token states and one pooled vector
(the last token's state, as decoder embedding models pool, or the mean).
`exaone4-export triton` copies this module into a head repository (exporter/triton_heads.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .contract import ATTENTION_MASK, INPUT_IDS, TOKENIZER_FILE
from .errors import InputError

MAX_ANSWER = 15  # tokens in an answer span (transformers' question-answering default)
IGNORED_LABELS = ("O",)  # token-classification labels that are not entities
POOLINGS = ("last", "mean")  # feature extraction's sentence vector: the last token's state, or the mean over tokens


@dataclass(frozen=True)
class Encoded:
    """One text (or question + context pair) as the tokenizer sees it."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]  # character spans in their own text
    special: list[int]  # 1 on special tokens
    sequence: list[int | None]  # 0: first text (the question), 1: the context of a pair


class HeadTokenizer:
    """The checkpoint's tokenizer.json, with the pad id the model was exported with."""

    def __init__(self, tokenizer, pad_token_id: int) -> None:
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id

    @classmethod
    def open(cls, directory: str, pad_token_id: int | None) -> HeadTokenizer:
        from tokenizers import Tokenizer

        path = os.path.join(directory, TOKENIZER_FILE)
        if not os.path.isfile(path):
            raise InputError(path, "not found: a head repository needs the checkpoint's tokenizer")
        return cls(Tokenizer.from_file(path), 0 if pad_token_id is None else pad_token_id)

    def encode(self, text: str, pair: str | None = None) -> Encoded:
        enc = self.tokenizer.encode(text, pair)
        return Encoded(list(enc.ids), list(enc.tokens), [tuple(o) for o in enc.offsets], list(enc.special_tokens_mask),
                       list(enc.sequence_ids))

    def batch(self, encodings: list[Encoded]) -> dict[str, np.ndarray]:
        """input_ids and attention_mask [B, longest], right-padded with the pad id."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_token_id, np.int64)
        mask = np.zeros((len(encodings), width), np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)], mask[row, : len(encoding.ids)] = encoding.ids, 1
        return {INPUT_IDS: ids, ATTENTION_MASK: mask}

    def tokens_to_string(self, tokens: list[str]) -> str:
        return self.tokenizer.decoder.decode(tokens) if self.tokenizer.decoder else "".join(tokens)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def classify(logits: np.ndarray, labels: list[str], problem_type: str | None) -> tuple[str, np.ndarray]:
    """(label, scores) of one sequence: sigmoid for multi-label or one label, none for regression, else softmax."""
    logits = np.asarray(logits, np.float32)
    if problem_type == "regression":
        scores = logits
    elif problem_type == "multi_label_classification" or len(labels) == 1:
        scores = 1.0 / (1.0 + np.exp(-logits))
    else:
        scores = softmax(logits)
    return labels[int(scores.argmax())], scores.astype(np.float32)


def word_entities(text: str, encoding: Encoded, logits: np.ndarray, labels: list[str], tokenizer: HeadTokenizer) -> list[dict]:
    """Entities of one text: tokens fused into words (a word's label is its first token's), then adjacent
    words of one tag grouped (B-/I- prefixes), labels in IGNORED_LABELS dropped."""
    scores = softmax(np.asarray(logits, np.float32)[: len(encoding.ids)])
    words: list[dict] = []
    for index, (token, (start, end)) in enumerate(zip(encoding.tokens, encoding.offsets)):
        if encoding.special[index]:
            continue
        subword = start > 0 and " " not in text[start - 1 : start + 1]  # transformers' rule for tokenizers without word ids
        if words and subword:
            words[-1]["tokens"].append(token)
            words[-1]["end"] = end
        else:
            best = int(scores[index].argmax())
            words.append({"entity": labels[best], "score": float(scores[index][best]), "tokens": [token],
                          "start": start, "end": end})
    for word in words:  # a word's text is its tokens decoded; a group's, its words' texts decoded again (as transformers does)
        word["word"] = tokenizer.tokens_to_string(word.pop("tokens"))
    return [group for group in _group(words, tokenizer) if group["entity_group"] not in IGNORED_LABELS]


def _tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group(words: list[dict], tokenizer: HeadTokenizer) -> list[dict]:
    groups: list[list[dict]] = []
    for word in words:
        bi, tag = _tag(word["entity"])
        if groups and _tag(groups[-1][-1]["entity"])[1] == tag and bi != "B":
            groups[-1].append(word)
        else:
            groups.append([word])
    return [{"entity_group": _tag(g[0]["entity"])[1], "score": float(np.mean([w["score"] for w in g])),
             "word": tokenizer.tokens_to_string([w["word"] for w in g]), "start": g[0]["start"], "end": g[-1]["end"]}
            for g in groups]


def best_span(start: np.ndarray, end: np.ndarray, real: np.ndarray, max_answer: int = MAX_ANSWER) -> tuple[int, int]:
    """(i, j) maximising start[i] + end[j] over real positions with i <= j < i + max_answer (on logits, this is
    the span with the highest start_prob * end_prob for probabilities over those positions)."""
    positions = np.flatnonzero(real)
    s, e = np.asarray(start, np.float64)[positions], np.asarray(end, np.float64)[positions]
    scores = s[:, None] + e[None, :]
    offset = positions[None, :] - positions[:, None]  # j - i, in token positions
    scores = np.where((offset >= 0) & (offset < max_answer), scores, -np.inf)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(positions[i]), int(positions[j])


def best_answer(context: str, encoding: Encoded, start: np.ndarray, end: np.ndarray, max_answer: int = MAX_ANSWER) -> tuple[str, float]:
    """(answer text, score) of a question + context pair: the context span (i <= j < i + max_answer) with the
    highest start_prob[i] * end_prob[j], probabilities over the context's tokens."""
    context_tokens = np.array([s == 1 and not sp for s, sp in zip(encoding.sequence, encoding.special)])
    if not context_tokens.any():
        return "", 0.0
    n = len(encoding.ids)
    i, j = best_span(start[:n], end[:n], context_tokens, max_answer)
    start_p = softmax(np.where(context_tokens, np.asarray(start, np.float64)[:n], -np.inf))
    end_p = softmax(np.where(context_tokens, np.asarray(end, np.float64)[:n], -np.inf))
    return context[encoding.offsets[i][0] : encoding.offsets[j][1]], float(start_p[i] * end_p[j])


def embed(states: np.ndarray, pooling: str = "last", normalize: bool = False) -> np.ndarray:
    """One text's vector from its token states [tokens, hidden] (no padding): the last token's state (the
    only one that has seen the whole text in a causal model) or their mean; optionally L2-normalized."""
    if pooling not in POOLINGS:
        raise InputError("pooling", f"must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    states = np.asarray(states, np.float32)
    vector = states[-1] if pooling == "last" else states.mean(0)
    if normalize:
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return vector.astype(np.float32)


def entities_json(entities: list[dict]) -> str:
    return json.dumps(entities, ensure_ascii=False)
