"""The EXAONE 4 architecture as one frozen dataclass, parsed from a Hugging Face config.json.

Everything downstream (the reference model, the exporter, the graph passes) reads
the architecture from `Exaone4Config` and nothing else. The per-layer behaviour is
computed once here, as a tuple of `LayerSpec`, so no other module has to know the
three ways a config can describe which layers slide (EXAONE 4 trap 3) or which
layers rotate (trap 1).

Parsing is strict: a field of the wrong type, a size that is not positive, heads
that do not divide, an unknown rope type or a model_type other than "exaone4"
raise `InputError` naming the field. Fields we do not use are ignored, and so is
`auto_map`: this tool never imports or runs code that ships with a checkpoint.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import CONFIG_FILE
from .errors import InputError
from .heads import HeadConfig, parse_head
from .jsonfile import JsonFields, read_json, short_repr


class LayerKind(enum.Enum):
    """Which attention a decoder layer uses; values are transformers' `layer_types` names."""

    SLIDING = "sliding_attention"
    GLOBAL = "full_attention"


@dataclass(frozen=True)
class LayerSpec:
    """What distinguishes one decoder layer's attention.

    window: number of keys a query sees, its own included (i - W < j <= i), or
        None for global attention.
    rope: whether queries and keys are rotated. EXAONE 4 rotates only sliding
        layers when a window is configured, and every layer when it is not.
    """

    kind: LayerKind
    window: int | None
    rope: bool


@dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding parameters, in a form independent of the config.json spelling.

    kind: "default", "linear" or "llama3" (the scaling EXAONE 4 checkpoints use).
    """

    theta: float
    kind: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class Exaone4Config:
    """The architecture of one EXAONE 4 checkpoint."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    max_position_embeddings: int
    rope: RopeConfig
    sliding_window: int | None
    layers: tuple[LayerSpec, ...]
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    torch_dtype: str = "float32"
    head: HeadConfig = HeadConfig()  # the class in `architectures` and a classifier's labels (exporter/heads.py)

    @property
    def layer_kinds(self) -> tuple[LayerKind, ...]:
        return tuple(spec.kind for spec in self.layers)

    @property
    def kv_groups(self) -> int:
        """Query heads per key/value head (GQA group size)."""
        return self.num_heads // self.num_kv_heads

    def parameter_count(self) -> int:
        """Number of distinct parameters (a tied lm_head counts once; heads count their own tensors)."""
        attn = self.hidden_size * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
        qk_norm = 2 * self.head_dim
        mlp = 3 * self.hidden_size * self.intermediate_size
        norms = 2 * self.hidden_size
        per_layer = attn + qk_norm + mlp + norms
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings or not self.head.is_causal_lm else embed
        head += sum(math.prod(shape) for shape in self.head.head_tensors(self.hidden_size).values())
        return embed + self.num_layers * per_layer + self.hidden_size + head

    def to_summary(self) -> dict[str, Any]:
        """A JSON-friendly summary for manifests and `inspect`."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "sliding_window": self.sliding_window,
            "layer_kinds": [spec.kind.value for spec in self.layers],
            "layer_rope": [spec.rope for spec in self.layers],
            "rope": {
                "type": self.rope.kind,
                "theta": self.rope.theta,
                "factor": self.rope.factor,
                "low_freq_factor": self.rope.low_freq_factor,
                "high_freq_factor": self.rope.high_freq_factor,
                "original_max_position_embeddings": self.rope.original_max_position_embeddings,
            },
            "parameters": self.parameter_count(),
            "torch_dtype": self.torch_dtype,
        }


# --------------------------------------------------------------------------- parsing


def load_config(path: Path) -> Exaone4Config:
    """Read and parse `path` (a config.json). Raises InputError naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "config.json not found")
    return parse_config(read_json(path), source=str(path))


def parse_config(raw: Any, source: str = CONFIG_FILE) -> Exaone4Config:
    """Parse a config.json dictionary into an `Exaone4Config`."""
    fields = JsonFields(raw, source)
    model_type = fields.get("model_type", str)
    if model_type != "exaone4":
        raise InputError(f"{source}: model_type", f"is {short_repr(model_type)}, expected 'exaone4'")
    act = fields.get("hidden_act", str, default="silu")
    if act != "silu":
        raise InputError(f"{source}: hidden_act", f"is {short_repr(act)}; EXAONE 4 uses 'silu'")

    hidden = fields.positive("hidden_size")
    heads = fields.positive("num_attention_heads")
    kv_heads = fields.positive("num_key_value_heads", default=heads)
    num_layers = fields.positive("num_hidden_layers")
    head_dim = fields.get("head_dim", int, default=None)
    if head_dim is None:
        if hidden % heads:
            raise InputError(
                f"{source}: num_attention_heads",
                f"{heads} does not divide hidden_size {hidden} and no head_dim is given",
            )
        head_dim = hidden // heads
    elif head_dim <= 0:
        raise InputError(f"{source}: head_dim", f"must be positive, got {head_dim}")
    if heads % kv_heads:
        raise InputError(
            f"{source}: num_key_value_heads",
            f"{kv_heads} does not divide num_attention_heads {heads}",
        )
    if head_dim % 2:
        raise InputError(f"{source}: head_dim", f"must be even for rotary embeddings, got {head_dim}")

    max_pos = fields.positive("max_position_embeddings", default=2048)
    window = fields.get("sliding_window", int, default=None)
    if window is not None and window <= 0:
        raise InputError(f"{source}: sliding_window", f"must be positive or null, got {window}")
    kinds = _layer_kinds(fields, num_layers, window, source)
    layers = tuple(
        LayerSpec(
            kind=kind,
            window=window if kind is LayerKind.SLIDING else None,
            rope=window is None or kind is LayerKind.SLIDING,
        )
        for kind in kinds
    )
    eps = fields.get("rms_norm_eps", float, default=1e-5)
    if _positive_number(eps) is None:
        raise InputError(f"{source}: rms_norm_eps", f"must be a positive number, got {eps}")

    return Exaone4Config(
        vocab_size=fields.positive("vocab_size"),
        hidden_size=hidden,
        intermediate_size=fields.positive("intermediate_size"),
        num_layers=num_layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=float(eps),
        tie_word_embeddings=fields.get("tie_word_embeddings", bool, default=False),
        max_position_embeddings=max_pos,
        rope=_rope(fields, source),
        sliding_window=window,
        layers=layers,
        bos_token_id=fields.get("bos_token_id", int, default=None),
        eos_token_ids=_eos_ids(fields, source),
        pad_token_id=fields.get("pad_token_id", int, default=None),
        torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "float32"),
        head=parse_head(raw, source),
    )


def _layer_kinds(
    fields: JsonFields, num_layers: int, window: int | None, source: str
) -> tuple[LayerKind, ...]:
    """Which layers slide. Order of precedence (trap 3):

    1. no sliding_window configured: every layer is global;
    2. an explicit `layer_types` list;
    3. `sliding_window_pattern` as an int p: layer i (0-based) is global when
       (i + 1) % p == 0, as transformers computes it;
    4. `sliding_window_pattern` as a string such as "LLLG", repeated over the
       layers; the last layer is always global, as in EXAONE's reference code.
    """
    if window is None:
        return (LayerKind.GLOBAL,) * num_layers
    layer_types = fields.get("layer_types", list, default=None)
    if layer_types is not None:
        if len(layer_types) != num_layers:
            raise InputError(
                f"{source}: layer_types",
                f"has {len(layer_types)} entries but num_hidden_layers is {num_layers}",
            )
        valid = {kind.value: kind for kind in LayerKind}
        for i, name in enumerate(layer_types):
            if not isinstance(name, str) or name not in valid:
                raise InputError(
                    f"{source}: layer_types[{i}]", f"is {short_repr(name)}, expected one of {sorted(valid)}"
                )
        return tuple(valid[name] for name in layer_types)

    pattern = fields.raw.get("sliding_window_pattern", 4)
    if isinstance(pattern, bool) or not isinstance(pattern, (int, str)):
        raise InputError(f"{source}: sliding_window_pattern", "must be an int or a string like 'LLLG'")
    if isinstance(pattern, int):
        if pattern <= 0:
            raise InputError(f"{source}: sliding_window_pattern", f"must be positive, got {pattern}")
        return tuple(
            LayerKind.GLOBAL if (i + 1) % pattern == 0 else LayerKind.SLIDING for i in range(num_layers)
        )
    if not pattern or set(pattern.upper()) - {"L", "G"}:
        raise InputError(
            f"{source}: sliding_window_pattern", f"{short_repr(pattern)} must be made of 'L' and 'G' only"
        )
    pattern = pattern.upper()
    return tuple(
        LayerKind.SLIDING
        if pattern[i % len(pattern)] == "L" and i != num_layers - 1
        else LayerKind.GLOBAL
        for i in range(num_layers)
    )


def _rope(fields: JsonFields, source: str) -> RopeConfig:
    """RoPE from either spelling: v4 (`rope_theta` + `rope_scaling`) or v5 (`rope_parameters`)."""
    params = fields.get("rope_parameters", dict, default=None)
    where = f"{source}: rope_parameters"
    if params is None:
        params = fields.get("rope_scaling", dict, default=None) or {}
        where = f"{source}: rope_scaling"
    theta = _positive_number(params.get("rope_theta", fields.raw.get("rope_theta", 10000.0)))
    if theta is None:
        given = params.get("rope_theta", fields.raw.get("rope_theta"))
        raise InputError(f"{source}: rope_theta", f"must be a positive finite number, got {short_repr(given)}")
    kind = params.get("rope_type", params.get("type", "default"))
    if not isinstance(kind, str) or kind not in SUPPORTED_ROPE_TYPES:
        raise InputError(
            f"{where}.rope_type",
            f"{short_repr(kind)} is not supported (supported: {', '.join(SUPPORTED_ROPE_TYPES)})",
        )

    def number(key: str, default: float) -> float:
        value = _positive_number(params.get(key, default))
        if value is None:
            raise InputError(f"{where}.{key}", f"must be a positive finite number, got {short_repr(params.get(key))}")
        return value

    rope = RopeConfig(theta=float(theta), kind=kind)
    if kind == "linear":
        rope = RopeConfig(theta=float(theta), kind=kind, factor=number("factor", 1.0))
    elif kind == "llama3":
        low, high = number("low_freq_factor", 1.0), number("high_freq_factor", 4.0)
        if high <= low:
            raise InputError(f"{where}.high_freq_factor", f"{high} must exceed low_freq_factor {low}")
        rope = RopeConfig(
            theta=float(theta),
            kind=kind,
            factor=number("factor", 8.0),
            low_freq_factor=low,
            high_freq_factor=high,
            original_max_position_embeddings=int(number("original_max_position_embeddings", 8192)),
        )
    return rope


def _positive_number(value: Any) -> float | None:
    """`value` as a finite positive float, or None when it is not one (bools, strings, NaN,
    Infinity and ints too large for a float included: Python's json reads all of them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _eos_ids(fields: JsonFields, source: str) -> tuple[int, ...]:
    value = fields.raw.get("eos_token_id")
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise InputError(f"{source}: eos_token_id", f"must be a token id or a list of them, got {short_repr(value)}")
    return tuple(values)
