"""The explicit swap that makes each layer's attention one `exaone4::Attention` node.

`use_custom_attention(model)` replaces every `AttentionCore` of the reference
model with `CustomOpAttentionCore`, whose forward emits the custom op through
`torch.onnx.ops.symbolic_multi_out`. The reference model itself never learns
that it is being exported (ExecuTorch's source-transformation style).
"""

from __future__ import annotations

import torch
from torch import nn

from ..graphs.attention_function import DOMAIN, OP_TYPE
from .model import AttentionCore
from .model_heads import decoder_of


class CustomOpAttentionCore(nn.Module):
    """Same inputs and outputs as `AttentionCore`; traced as one custom-domain node."""

    def __init__(self, core: AttentionCore) -> None:
        super().__init__()
        spec = core.spec
        self.num_heads = core.num_heads
        self.num_kv_heads = core.num_kv_heads
        self.head_dim = core.head_dim
        self.attributes = {
            "num_heads": core.num_heads,
            "kv_num_heads": core.num_kv_heads,
            "head_dim": core.head_dim,
            "window": spec.window or 0,
            "rope": int(spec.rope),
            "scale": float(core.scale),
        }

    def forward(self, q, k, v, past_key, past_value, cos_table, sin_table, position_ids, attention_mask):
        batch, seq = q.shape[0], q.shape[1]
        total = past_key.shape[2] + seq
        kv_shape = [batch, self.num_kv_heads, total, self.head_dim]
        out, present_key, present_value = torch.onnx.ops.symbolic_multi_out(
            f"{DOMAIN}::{OP_TYPE}",
            [q, k, v, past_key, past_value, cos_table, sin_table, position_ids, attention_mask],
            attrs=self.attributes,
            dtypes=[q.dtype, past_key.dtype, past_value.dtype],
            shapes=[[batch, seq, self.num_heads * self.head_dim], kv_shape, kv_shape],
            version=1,
        )
        return out, present_key, present_value


def use_custom_attention(model: nn.Module) -> nn.Module:
    """Swap every layer's AttentionCore for the custom-op version, in place (any EXAONE 4 class)."""
    for layer in decoder_of(model).layers:
        layer.self_attn.core = CustomOpAttentionCore(layer.self_attn.core)
    return model
