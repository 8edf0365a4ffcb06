"""The engine's knobs, read from the Triton model config's parameters (written by `exaone4-export triton`).

`max_batch` slots of `max_context` positions are allocated once, at load (the
memory is `slots.pool_bytes`: rings on a ring export's sliding layers). Requests beyond the
slots wait in a queue of at most `max_queue`; past that they are refused at once.
A prompt enters the cache in chunks of `prefill_chunk` tokens, and a step prefills
at most that many prompt tokens, so a long prompt delays the running streams by
one chunk's compute per step, not by the whole prompt's. While streams decode, a
step prefills fewer: as many tokens as the measured prefill speed fits in
`prefill_stall` decode steps' time (Scheduler), so a running stream's gap stays
within 1 + prefill_stall of its decode step on any hardware; 0 turns that off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..contract import CacheLayout
from ..errors import InputError
from ..jsonfile import read_json


@dataclass(frozen=True)
class EngineConfig:
    max_batch: int = 8  # sequence slots (batch rows of the KV buffers)
    max_context: int = 512  # positions per slot: prompt plus generated tokens
    max_queue: int = 64  # requests waiting for a slot before new ones are refused
    prefill_chunk: int = 256  # prompt tokens prefilled per step (and per chunk), at most
    prefill_stall: int = 1  # while streams decode, a step's prefill takes about this many decode steps' time (0: no limit)
    threads: int = 0  # onnxruntime intra-op threads (0: onnxruntime's default)

    def __post_init__(self) -> None:
        for spec in fields(self):
            value, least = getattr(self, spec.name), 0 if spec.name in ("threads", "prefill_stall") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(spec.name, f"must be an integer of at least {least}, got {value!r}")

    @classmethod
    def from_parameters(cls, parameters: dict[str, str], where: str) -> EngineConfig:
        """From config.pbtxt `parameters` (string values); a missing knob keeps its default."""
        values = {}
        for spec in fields(cls):
            if spec.name in parameters:
                text = parameters[spec.name]
                try:
                    values[spec.name] = int(text)
                except ValueError:
                    raise InputError(f"{where}: parameter {spec.name}", f"must be an integer, got {text!r}") from None
        try:
            return cls(**values)
        except InputError as exc:
            raise InputError(f"{where}: parameter {exc.where}", exc.problem) from None

    def parameters(self) -> dict[str, str]:
        """As config.pbtxt `parameters`."""
        return {name: str(value) for name, value in asdict(self).items()}



@dataclass(frozen=True)
class EngineSpec:
    """What the engine model reads beside its graph (the spec file): the cache layout, the export's positions."""

    layout: CacheLayout
    max_positions: int  # the export's in-place cache positions: max_context may not exceed it

    def to_json(self) -> dict:
        layout = self.layout
        return {"num_layers": layout.num_layers, "num_kv_heads": layout.num_kv_heads, "head_dim": layout.head_dim,
                "kv_dtype": layout.dtype.name, "rings": list(layout.rings), "max_positions": self.max_positions}

    @classmethod
    def read(cls, path: Path) -> EngineSpec:
        """From the spec file; InputError naming it when a field is missing or wrong."""
        raw = read_json(path)
        try:
            rings = tuple(int(window) for window in raw.get("rings", []))  # absent before ring exports: no ring
            layout = CacheLayout(int(raw["num_layers"]), int(raw["num_kv_heads"]), int(raw["head_dim"]), np.dtype(raw["kv_dtype"]),
                                 rings)
            return cls(layout, int(raw["max_positions"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(str(path), f"not an engine spec ({exc!r})") from None

    def check(self, config: EngineConfig, where: str) -> None:
        if config.max_context > self.max_positions:
            raise InputError(f"{where}: parameter max_context", f"{config.max_context} exceeds the export's in-place cache "
                             f"of {self.max_positions} positions")
