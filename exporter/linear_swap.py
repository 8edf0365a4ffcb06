"""The explicit swap that makes every Linear a MatMul on a pre-transposed weight.

`nn.Linear` traces as `x @ Transpose(W)`; each runtime then transposes every
weight when it loads the model. `use_pretransposed_linears` replaces each Linear
(except a lm_head tied to the embedding, which must stay one tensor) with
`PretransposedLinear`, whose parameter `weight_t` is W stored as [in, out]. The
exporter streams the checkpoint's W into it transposed (exporter/stream.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .model import Exaone4ForCausalLM

TRANSPOSED_SUFFIX = "_t"


class PretransposedLinear(nn.Module):
    """y = x @ weight_t, weight_t [in, out]: a bias-free Linear with its weight stored transposed."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight
        self.weight_t = nn.Parameter(torch.empty(weight.shape[1], weight.shape[0], dtype=weight.dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight_t


def use_pretransposed_linears(model: Exaone4ForCausalLM) -> Exaone4ForCausalLM:
    """Swap every untied nn.Linear for PretransposedLinear, in place."""
    tied = model.config.tie_word_embeddings
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and not (tied and child is model.lm_head):
                setattr(parent, name, PretransposedLinear(child))
    return model
