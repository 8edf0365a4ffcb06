"""Reference EXAONE 4 in plain PyTorch, read top to bottom.

This is the model every export, engine and runtime is checked against. It follows
the EXAONE 4 architecture exactly (docs/architecture.md#exaone-4-traps):

- no input norm in a decoder layer: h = x + post_attn_norm(attn(x)),
  y = h + post_ffn_norm(mlp(h)); RMSNorm computes in fp32;
- QK-norm: RMSNorm over head_dim per head, after projection, before RoPE;
- RoPE only on layers whose `LayerSpec.rope` is set (sliding layers when a window
  is configured, every layer otherwise), llama3 scaling applied to the frequencies;
- a sliding layer's query at cache index i sees keys j with i - W < j <= i;
- sliding layers cache keys after RoPE, global (NoPE) layers before any rotation.

The KV cache is explicit: `forward` takes past keys/values per layer, shaped
[batch, kv_heads, past, head_dim], and returns the presents with `past + seq`
positions (docs/architecture.md#io-contract). Parameter names match the Hugging
Face checkpoint names, so weights load without a name map.

The part of attention that backends implement differently (rotary embedding,
cache append, masked softmax) lives in `AttentionCore`. An exporter swaps that
module for one that emits a custom op; nothing in this file knows about backends.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import Exaone4Config, LayerSpec, RopeConfig
from .contract import LAST_HIDDEN_STATE


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 whatever the activation dtype (trap 4, trap 7)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


# --------------------------------------------------------------------------- rotary embedding


def rope_inv_freq(rope: RopeConfig, head_dim: int) -> torch.Tensor:
    """Inverse frequencies [head_dim / 2] with the configured scaling applied."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim
    inv_freq = 1.0 / (rope.theta**exponents)
    if rope.kind == "linear":
        return inv_freq / rope.factor
    if rope.kind == "llama3":
        return _llama3_scale(inv_freq, rope)
    return inv_freq


def _llama3_scale(inv_freq: torch.Tensor, rope: RopeConfig) -> torch.Tensor:
    """Llama 3.1 frequency scaling: long wavelengths slowed by `factor`, a smooth band between."""
    old_len = rope.original_max_position_embeddings
    low_freq_wavelen = old_len / rope.low_freq_factor
    high_freq_wavelen = old_len / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def rope_tables(config: Exaone4Config) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [max_position_embeddings, head_dim / 2] in fp32, on the CPU."""
    inv_freq = rope_inv_freq(config.rope, config.head_dim)
    positions = torch.arange(config.max_position_embeddings, dtype=torch.int64, device="cpu").float()
    angles = positions[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, heads, S, D] by per-position cos/sin [B, S, D/2] (rotate-half layout)."""
    cos = torch.cat((cos, cos), dim=-1).unsqueeze(1).to(x.dtype)  # [B, 1, S, D]
    sin = torch.cat((sin, sin), dim=-1).unsqueeze(1).to(x.dtype)
    return x * cos + rotate_half(x) * sin


# --------------------------------------------------------------------------- attention


def attention_bias(
    attention_mask: torch.Tensor, seq_len: int, window: int | None
) -> torch.Tensor:
    """Additive fp32 bias [B, 1, S, T] for S queries over T = past + S cached keys.

    Query i sits at cache index past + i. It may see key j when j <= past + i,
    the key is not padding (attention_mask[b, j] == 1), and, for a sliding layer,
    j > past + i - window: W keys, its own included (trap 2).
    """
    total = attention_mask.shape[1]
    past = total - seq_len
    query_index = torch.arange(seq_len, device=attention_mask.device)[:, None] + past  # [S, 1]
    key_index = torch.arange(total, device=attention_mask.device)[None, :]  # [1, T]
    allowed = key_index <= query_index
    if window is not None:
        allowed = allowed & (key_index > query_index - window)
    allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()  # [B, 1, S, T]
    zero = torch.zeros((), dtype=torch.float32, device=attention_mask.device)
    return torch.where(allowed, zero, torch.finfo(torch.float32).min)


class AttentionCore(nn.Module):
    """Rotary embedding, KV-cache append and masked attention of one layer.

    Inputs are the projected, QK-normed q [B, S, H*D] and k, v [B, S, KV*D], the
    layer's past keys/values [B, KV, P, D], the shared cos/sin tables
    [max_pos, D/2], position_ids [B, S] and attention_mask [B, P+S]. Returns the
    attention output [B, S, H*D] and the present keys/values [B, KV, P+S, D].
    This is the unit an ONNX export turns into one `exaone4::Attention` node.
    """

    def __init__(self, config: Exaone4Config, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.scale = config.head_dim**-0.5

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        past_key: torch.Tensor,
        past_value: torch.Tensor,
        cos_table: torch.Tensor,
        sin_table: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, seq, _ = q.shape
        q = q.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, S, D]
        k = k.view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, KV, S, D]
        v = v.view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, KV, S, D]
        if self.spec.rope:
            cos, sin = cos_table[position_ids], sin_table[position_ids]  # [B, S, D/2]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        present_key = torch.cat((past_key, k), dim=2)  # [B, KV, P+S, D]
        present_value = torch.cat((past_value, v), dim=2)

        groups = self.num_heads // self.num_kv_heads
        keys = present_key.repeat_interleave(groups, dim=1)  # [B, H, P+S, D]
        values = present_value.repeat_interleave(groups, dim=1)
        scores = (q @ keys.transpose(-1, -2)).float() * self.scale  # [B, H, S, P+S]
        scores = scores + attention_bias(attention_mask, seq, self.spec.window)
        probs = F.softmax(scores, dim=-1).to(values.dtype)
        out = (probs @ values).transpose(1, 2).reshape(batch, seq, -1)  # [B, S, H*D]
        return out, present_key, present_value


class Attention(nn.Module):
    """Projections and QK-norm around the swappable `AttentionCore`."""

    def __init__(self, config: Exaone4Config, spec: LayerSpec) -> None:
        super().__init__()
        h, d = config.hidden_size, config.head_dim
        self.head_dim = d
        self.q_proj = nn.Linear(h, config.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, config.num_kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, config.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(config.num_heads * d, h, bias=False)
        self.q_norm = RMSNorm(d, config.rms_norm_eps)
        self.k_norm = RMSNorm(d, config.rms_norm_eps)
        self.core = AttentionCore(config, spec)

    def _per_head_norm(self, x: torch.Tensor, norm: RMSNorm) -> torch.Tensor:
        batch, seq, width = x.shape
        x = x.view(batch, seq, width // self.head_dim, self.head_dim)  # [B, S, heads, D]
        return norm(x).view(batch, seq, width)

    def forward(self, x, past_key, past_value, cos_table, sin_table, position_ids, attention_mask):
        q = self._per_head_norm(self.q_proj(x), self.q_norm)  # [B, S, H*D]
        k = self._per_head_norm(self.k_proj(x), self.k_norm)  # [B, S, KV*D]
        v = self.v_proj(x)
        out, present_key, present_value = self.core(
            q, k, v, past_key, past_value, cos_table, sin_table, position_ids, attention_mask
        )
        return self.o_proj(out), present_key, present_value


class MLP(nn.Module):
    """SwiGLU feed-forward."""

    def __init__(self, config: Exaone4Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Post-norm residual block: no input norm, norms on the attention and MLP outputs."""

    def __init__(self, config: Exaone4Config, spec: LayerSpec) -> None:
        super().__init__()
        self.self_attn = Attention(config, spec)
        self.mlp = MLP(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_feedforward_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, past_key, past_value, cos_table, sin_table, position_ids, attention_mask):
        attn, present_key, present_value = self.self_attn(
            x, past_key, past_value, cos_table, sin_table, position_ids, attention_mask
        )
        h = x + self.post_attention_layernorm(attn)
        y = h + self.post_feedforward_layernorm(self.mlp(h))
        return y, present_key, present_value


class Exaone4Model(nn.Module):
    """Embedding, decoder layers and final norm: the decoder every EXAONE 4 class shares.

    Its checkpoint names are `model.*` in a causal LM and the classifiers,
    `transformer.*` in question answering, and bare in the base model, whose
    checkpoint is this module alone (exporter/heads.py). The RoPE tables are
    computed from the config, never read from a checkpoint.
    """

    def __init__(self, config: Exaone4Config) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, spec) for spec in config.layers)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, past_keys, past_values):
        """input_ids, position_ids [B, S]; attention_mask [B, P+S]; past_* per layer [B, KV, P, D].

        Returns (final-normed hidden states [B, S, hidden], present_keys, present_values,
        each layer's output [B, S, hidden]).
        """
        x = self.embed_tokens(input_ids)  # [B, S, hidden]
        present_keys, present_values, hidden = [], [], []
        for layer, past_key, past_value in zip(self.layers, past_keys, past_values):
            x, present_key, present_value = layer(
                x, past_key, past_value, self.rope_cos, self.rope_sin, position_ids, attention_mask
            )
            present_keys.append(present_key)
            present_values.append(present_value)
            hidden.append(x)
        return self.norm(x), present_keys, present_values, hidden

    def empty_cache(self, batch, dtype: torch.dtype):
        """Zero-length past keys and values for a prefill (`batch` may be a traced size)."""
        shape = (batch, self.config.num_kv_heads, 0, self.config.head_dim)
        keys = [torch.zeros(shape, dtype=dtype) for _ in range(self.config.num_layers)]
        values = [torch.zeros(shape, dtype=dtype) for _ in range(self.config.num_layers)]
        return keys, values

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One forward without a KV cache: final-normed hidden states [B, S, hidden].

        What the heads read. Positions count each row's real tokens (0 on its first
        one), so a row's result does not depend on its padding, left or right.
        """
        positions = position_ids_from_mask(attention_mask, input_ids.shape[1])
        keys, values = self.empty_cache(input_ids.shape[0], self.embed_tokens.weight.dtype)
        return self(input_ids, attention_mask, positions, keys, values)[0]

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The base model's export output: `last_hidden_state` [B, S, hidden] in fp32."""
        return {LAST_HIDDEN_STATE: self.encode(input_ids, attention_mask).float()}


class Exaone4ForCausalLM(nn.Module):
    """The whole decoder: token ids and KV cache in, logits and new KV cache out."""

    def __init__(self, config: Exaone4Config) -> None:
        super().__init__()
        self.config = config
        self.model = Exaone4Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_keys: list[torch.Tensor],
        past_values: list[torch.Tensor],
        output_hidden_states: bool = False,
    ):
        """input_ids, position_ids [B, S]; attention_mask [B, P+S]; past_* per layer [B, KV, P, D].

        Returns (logits [B, S, vocab] fp32, present_keys, present_values), plus the
        hidden state after every layer when `output_hidden_states` is set.
        """
        x, present_keys, present_values, hidden = self.model(input_ids, attention_mask, position_ids, past_keys, past_values)
        logits = self.lm_head(x).float()
        if output_hidden_states:
            return logits, present_keys, present_values, hidden
        return logits, present_keys, present_values

    def empty_cache(self, batch: int, dtype: torch.dtype | None = None):
        """Zero-length past keys and values for a prefill."""
        return self.model.empty_cache(batch, dtype or self.lm_head.weight.dtype)


def position_ids_from_mask(attention_mask: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Positions of the last `seq_len` tokens: count of real tokens before each, 0 on padding.

    With left padding, a row's first real token gets position 0, as in transformers.
    """
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.clamp(min=0)
    return positions[:, -seq_len:]
