"""Build the reference model from a checkpoint, one tensor at a time."""

from __future__ import annotations

import torch
from torch import nn

from .checkpoint import Checkpoint
from .errors import InputError
from .model_heads import build_model


def load_reference_model(checkpoint: Checkpoint, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The reference model of the checkpoint's class (config.json's `architectures`), weights in `dtype`.

    A causal LM (`Exaone4ForCausalLM`, the default) or one of the other EXAONE 4
    classes (exporter/model_heads.py). The module is built on the meta device, so
    no memory is spent on random initial weights; each tensor is read from disk
    and assigned in place. Non-finite weights are refused, naming the tensor.
    """
    config = checkpoint.config
    tied = config.tie_word_embeddings and config.head.is_causal_lm
    with torch.device("meta"):
        model = build_model(config)
    state = {}
    for name, tensor in checkpoint.iter_tensors(dtype):
        if name == "lm_head.weight" and tied:
            continue
        if not torch.isfinite(tensor).all():
            raise InputError(str(checkpoint.tensors[name].file), f"tensor {name!r} holds NaN or Inf values")
        state[name] = tensor
    model.load_state_dict(state, strict=False, assign=True)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    leftover = [name for name, p in model.named_parameters() if p.is_meta]
    if leftover:  # the checkpoint validation should have caught this
        raise InputError(str(checkpoint.directory), f"no data for {', '.join(leftover[:3])}")
    return model.eval()
