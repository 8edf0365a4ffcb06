"""Names every artifact of this tool agrees on, defined once: files, IO tensors, dtypes, formats.

An export directory, an engine directory, a Triton repository and the runners all
speak in these names; nothing else spells them. The module imports nothing from the
project (graph passes may use it too) and nothing heavier than numpy.
docs/architecture.md#io-contract says what the tensors mean; docs/io-contract.md
holds their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config import Exaone4Config

# ----------------------------------------------------------------------------- files

EXPORT_MANIFEST = "export.json"  # an export directory's manifest (exporter/artifacts.py: ExportDir)
BUILD_MANIFEST = "build.json"  # an engine directory's build record (exporter/artifacts.py: EngineDir)
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"  # external weights, when they exceed one protobuf
ENGINE_FILE = "model.engine"
GENAI_CONFIG = "genai_config.json"  # onnxruntime-genai's description of an ort export

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # where LG's checkpoints keep the template
GENERATION_SPEC_FILE = "generation.json"  # what a Triton generation model knows of its decoder or engine
HELDOUT_TEXT_FILE = "heldout.txt"  # the bundled model's held-out text: verify's default perplexity text
# What travels with the model from a checkpoint into an export, an engine and a Triton repository.
SIDE_FILES = (
    CONFIG_FILE,
    GENERATION_CONFIG_FILE,
    TOKENIZER_FILE,
    TOKENIZER_CONFIG_FILE,
    SPECIAL_TOKENS_FILE,
    CHAT_TEMPLATE_FILE,
)

EXPORT_FORMAT = "exaone4-export/1"
ENGINE_FORMAT = "exaone4-engine/1"

# ----------------------------------------------------------------------------- IO names

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"
# The outputs of the other EXAONE 4 classes' exports (exporter/heads.py), named as optimum names them.
LAST_HIDDEN_STATE = "last_hidden_state"
START_LOGITS, END_LOGITS = "start_logits", "end_logits"
KV_KINDS = ("key", "value")
PAST_PREFIX, PRESENT_PREFIX = "past_key_values.", "present."


def past_name(layer: int, kind: str) -> str:
    """`past_key_values.{layer}.{kind}`: a layer's cached keys or values fed in."""
    return f"{PAST_PREFIX}{layer}.{kind}"


def present_name(layer: int, kind: str) -> str:
    """`present.{layer}.{kind}`: the cache returned, past plus this call's positions."""
    return f"{PRESENT_PREFIX}{layer}.{kind}"


HIDDEN_STATES = "hidden_states."


def hidden_state_name(layer: int) -> str:
    """`hidden_states.{layer}`: a decoder layer's output (what the harness compares per layer)."""
    return f"{HIDDEN_STATES}{layer}"


def past_names(num_layers: int) -> list[str]:
    return [past_name(i, kind) for i in range(num_layers) for kind in KV_KINDS]


def present_names(num_layers: int) -> list[str]:
    return [present_name(i, kind) for i in range(num_layers) for kind in KV_KINDS]


def present_for(past: str) -> str:
    """The present output that continues a past input."""
    return past.replace(PAST_PREFIX, PRESENT_PREFIX, 1)


RING_CHUNK = 256  # tokens one call may add on top of a ring's past (graphs/ring_cache.py): R = window + RING_CHUNK - 1


@dataclass(frozen=True)
class CacheLayout:
    """What a KV cache looks like for one model: [B, kv_heads, length, head_dim] per layer.

    `rings[i]` is layer i's window when an in-place export keeps that layer's cache
    as a ring (graphs/ring_cache.py), else 0; empty for every other cache.
    """

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: np.dtype
    rings: tuple[int, ...] = ()

    @classmethod
    def of(cls, config: Exaone4Config, dtype=np.float32, rings: bool = False) -> CacheLayout:
        windows = tuple(spec.window or 0 for spec in config.layers) if rings else ()
        return cls(config.num_layers, config.num_kv_heads, config.head_dim, np.dtype(dtype), windows if any(windows) else ())

    @property
    def layer_bytes(self) -> int:
        """Bytes one cached position takes in one layer for one sequence (keys and values)."""
        return len(KV_KINDS) * self.num_kv_heads * self.head_dim * self.dtype.itemsize

    @property
    def full_slot_bytes(self) -> int:
        """Bytes one cached position takes for one sequence when every layer keeps it (no rings)."""
        return self.num_layers * self.layer_bytes

    @property
    def slot_bytes(self) -> int:
        """Bytes one cached position takes for one sequence: keys and values of every layer that grows."""
        growing = self.num_layers - sum(1 for w in self.rings if w)
        return growing * self.layer_bytes

    def ring_slots(self, layer: int, prompt: int = 0) -> int:
        """Slots of layer `layer`'s ring (0: not a ring): room for a RING_CHUNK-token call on top of the
        window, or for a whole first prompt of `prompt` tokens."""
        window = self.rings[layer] if self.rings else 0
        return max(window + RING_CHUNK - 1, prompt) if window else 0

    def ring_bytes(self) -> int:
        """Bytes every ring takes for one sequence (prompts up to their default size)."""
        return sum(self.ring_slots(i) for i in range(self.num_layers)) * self.layer_bytes

    def empty(self, batch: int) -> dict[str, np.ndarray]:
        """An empty past for `batch` rows: every layer's keys and values with length 0."""
        return self.zeros(batch, [0] * self.num_layers)

    def zeros(self, batch: int, lengths: list[int]) -> dict[str, np.ndarray]:
        """Zeroed keys and values [batch, kv_heads, lengths[layer], head_dim] for every layer, by past name."""
        return {past_name(layer, kind): np.zeros((batch, self.num_kv_heads, length, self.head_dim), self.dtype)
                for layer, length in enumerate(lengths) for kind in KV_KINDS}


# ----------------------------------------------------------------------------- dtypes


@dataclass(frozen=True)
class DType:
    """One element type under every spelling the tool meets.

    `name` is the only spelling written into manifests and build records; it is also
    numpy's and torch's attribute name, so `np.dtype(name)` and `getattr(torch, name)`
    work wherever those libraries are at hand.
    """

    name: str
    onnx: str  # onnx_ir.DataType member name
    triton: str  # Triton model-config data type
    tensorrt: str  # tensorrt.DataType member name


DTYPES = {
    d.name: d
    for d in (
        DType("float32", "FLOAT", "TYPE_FP32", "FLOAT"),
        DType("float16", "FLOAT16", "TYPE_FP16", "HALF"),
        DType("bfloat16", "BFLOAT16", "TYPE_BF16", "BF16"),
        DType("int64", "INT64", "TYPE_INT64", "INT64"),
        DType("int32", "INT32", "TYPE_INT32", "INT32"),
        DType("bool", "BOOL", "TYPE_BOOL", "BOOL"),
        DType("uint64", "UINT64", "TYPE_UINT64", "UINT64"),  # TensorRT has none; Triton request seeds
        DType("string", "STRING", "TYPE_STRING", "STRING"),  # TensorRT has none; Triton request text
    )
}
# Spellings found in artifacts written before the vocabulary was fixed (onnx_ir's lower-cased
# "float", TensorRT's "half"); read, never written.
LEGACY_DTYPE_NAMES = {"float": "float32", "half": "float16"}
# The float dtypes an export's weights and activations may be in (--dtype).
EXPORT_DTYPES = ("float32", "float16")


def dtype(spelling: str) -> DType:
    """The DType of any known spelling: ours, ONNX's, Triton's, TensorRT's or a legacy manifest's."""
    key = str(spelling).split(".")[-1]
    lowered = LEGACY_DTYPE_NAMES.get(key.lower(), key.lower())
    if lowered in DTYPES:
        return DTYPES[lowered]
    for entry in DTYPES.values():
        if key in (entry.onnx, entry.triton, entry.tensorrt):
            return entry
    raise KeyError(f"unknown dtype {spelling!r}")
