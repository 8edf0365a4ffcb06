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

TRANSPOSED_SUFFIX = "_t"


class PretransposedLinear(nn.Module):
    """y = x @ weight_t (+ bias), weight_t [in, out]: a Linear with its weight stored transposed.

    The heads' `score` (token classification) and `qa_outputs` keep their bias, under its checkpoint name.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight
        self.weight_t = nn.Parameter(torch.empty(weight.shape[1], weight.shape[0], dtype=weight.dtype), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(torch.empty_like(linear.bias), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias


def use_pretransposed_linears(model: nn.Module) -> nn.Module:
    """Swap every nn.Linear but a tied lm_head for PretransposedLinear, in place (any EXAONE 4 class)."""
    lm_head = getattr(model, "lm_head", None)
    tied = model.config.tie_word_embeddings and lm_head is not None
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and not (tied and child is lm_head):
                setattr(parent, name, PretransposedLinear(child))
    return model
