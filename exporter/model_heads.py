"""The heads of EXAONE 4, each a few lines on top of the reference decoder (exporter/model.py).

Each reads the decoder's final-normed hidden states from one forward without a KV
cache (`Exaone4Model.encode`) and returns its export outputs by name, in fp32,
exactly as transformers' `Exaone4For*` classes compute them:

- sequence classification scores the last token that is not `pad_token_id`
  (transformers' rule: the rightmost such token, so left and right padding both
  work; with no pad token, the last position);
- token classification scores every position;
- question answering splits `qa_outputs` into start and end logits.

Module names match the checkpoints' tensor names (`model.*` / `transformer.*`,
`score.*`, `qa_outputs.*`), so weights load without a name map. The base model
(`Exaone4Model`, `last_hidden_state`) is the decoder itself.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import Exaone4Config
from .contract import END_LOGITS, LOGITS, START_LOGITS
from .heads import Head
from .model import Exaone4ForCausalLM, Exaone4Model


def last_scored_token(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """[B] index of each row's rightmost token that is not padding (transformers' rule).

    A row of padding only scores position 0 (argmax of zeros), as transformers does.
    """
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # [S]
    if pad_token_id is None:
        return positions.expand_as(input_ids).amax(-1)  # the last position of every row
    return (positions * (input_ids != pad_token_id).long()).amax(-1)


class Exaone4ForSequenceClassification(nn.Module):
    """One row of label logits per sequence, scored at its last non-padding token."""

    def __init__(self, config: Exaone4Config) -> None:
        super().__init__()
        self.config = config
        self.model = Exaone4Model(config)
        self.score = nn.Linear(config.hidden_size, config.head.num_labels, bias=False)

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.model.encode(input_ids, attention_mask)  # [B, S, hidden]
        last = last_scored_token(input_ids, self.config.pad_token_id)  # [B]
        index = last[:, None, None].expand(-1, 1, hidden.shape[-1])  # [B, 1, hidden]
        pooled = hidden.gather(1, index).squeeze(1)  # [B, hidden]
        return {LOGITS: self.score(pooled).float()}  # [B, num_labels]


class Exaone4ForTokenClassification(nn.Module):
    """Label logits at every position (`score` has a bias unless token_classification_bias is false)."""

    def __init__(self, config: Exaone4Config) -> None:
        super().__init__()
        self.config = config
        self.model = Exaone4Model(config)
        self.score = nn.Linear(config.hidden_size, config.head.num_labels, bias=config.head.score_bias)

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.model.encode(input_ids, attention_mask)
        return {LOGITS: self.score(hidden).float()}  # [B, S, num_labels]


class Exaone4ForQuestionAnswering(nn.Module):
    """Start and end logits of an answer span at every position."""

    def __init__(self, config: Exaone4Config) -> None:
        super().__init__()
        self.config = config
        self.transformer = Exaone4Model(config)  # transformers' name for this head's decoder
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.transformer.encode(input_ids, attention_mask)
        start, end = self.qa_outputs(hidden).float().unbind(-1)  # [B, S] each
        return {START_LOGITS: start, END_LOGITS: end}


MODEL_CLASSES: dict[Head, type[nn.Module]] = {
    Head.CAUSAL_LM: Exaone4ForCausalLM,
    Head.BASE: Exaone4Model,
    Head.SEQUENCE_CLASSIFICATION: Exaone4ForSequenceClassification,
    Head.TOKEN_CLASSIFICATION: Exaone4ForTokenClassification,
    Head.QUESTION_ANSWERING: Exaone4ForQuestionAnswering,
}


def build_model(config: Exaone4Config) -> nn.Module:
    """The reference module of the class `config.head` names (on the current device)."""
    return MODEL_CLASSES[config.head.head](config)


def decoder_of(model: nn.Module) -> Exaone4Model:
    """The shared decoder inside any of the classes."""
    if isinstance(model, Exaone4Model):
        return model
    return model.transformer if isinstance(model, Exaone4ForQuestionAnswering) else model.model
