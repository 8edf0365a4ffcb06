"""Open a local Hugging Face EXAONE 4 checkpoint directory and read its tensors lazily.

A checkpoint is config.json plus either one `model.safetensors` or shards listed
in `model.safetensors.index.json`. Pickle files (`pytorch_model.bin`, `*.pt`) are
never opened: loading them can run arbitrary code.

`Checkpoint.open` validates everything that can be validated without reading
tensor data: the config, that every shard named by the index exists inside the
directory, that every safetensors header is well formed and fits its file, and
that the tensors present are exactly those the config implies, with the right
shapes and a supported dtype. Tensor data is then read one tensor at a time with
`safe_open`, so a 64 GB checkpoint never has to fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from .config import Exaone4Config, load_config
from .contract import CONFIG_FILE
from .errors import InputError
from .jsonfile import read_json, sha256_file
from .safetensors_header import read_header

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
SUPPORTED_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def expected_shapes(config: Exaone4Config) -> dict[str, tuple[int, ...]]:
    """Every tensor name a checkpoint of this architecture holds, with its shape.

    The decoder's names carry the head's prefix (`model.`, `transformer.` for question
    answering, none for the base model); a causal LM adds `lm_head.weight`, a head its
    own tensors (exporter/heads.py).
    """
    h, d = config.hidden_size, config.head_dim
    prefix = config.head.layout.prefix
    shapes: dict[str, tuple[int, ...]] = {f"{prefix}embed_tokens.weight": (config.vocab_size, h)}
    for i in range(config.num_layers):
        p = f"{prefix}layers.{i}."
        shapes[p + "self_attn.q_proj.weight"] = (config.num_heads * d, h)
        shapes[p + "self_attn.k_proj.weight"] = (config.num_kv_heads * d, h)
        shapes[p + "self_attn.v_proj.weight"] = (config.num_kv_heads * d, h)
        shapes[p + "self_attn.o_proj.weight"] = (h, config.num_heads * d)
        shapes[p + "self_attn.q_norm.weight"] = (d,)
        shapes[p + "self_attn.k_norm.weight"] = (d,)
        shapes[p + "mlp.gate_proj.weight"] = (config.intermediate_size, h)
        shapes[p + "mlp.up_proj.weight"] = (config.intermediate_size, h)
        shapes[p + "mlp.down_proj.weight"] = (h, config.intermediate_size)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "post_feedforward_layernorm.weight"] = (h,)
    shapes[f"{prefix}norm.weight"] = (h,)
    if config.head.is_causal_lm:
        shapes["lm_head.weight"] = (config.vocab_size, h)
    return {**shapes, **config.head.head_tensors(h)}


@dataclass
class TensorInfo:
    """Where one tensor lives and what it is, read from the safetensors header."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]


@dataclass
class Checkpoint:
    """A validated checkpoint directory; tensors are read on demand."""

    directory: Path
    config: Exaone4Config
    tensors: dict[str, TensorInfo]
    files: list[Path] = field(default_factory=list)

    @classmethod
    def open(cls, directory: Path | str) -> Checkpoint:
        directory = Path(directory)
        if not directory.is_dir():
            raise InputError(str(directory), "checkpoint directory not found")
        config = load_config(directory / CONFIG_FILE)
        files = _safetensors_files(directory)
        tensors = _read_headers(files)
        _check_tensors(config, tensors)
        return cls(directory=directory, config=config, tensors=tensors, files=files)

    @property
    def dtype(self) -> str:
        """The storage dtype of the weights ("BF16", "F16", "F32" or "mixed")."""
        dtypes = {info.dtype for info in self.tensors.values()}
        return dtypes.pop() if len(dtypes) == 1 else "mixed"

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def has(self, name: str) -> bool:
        return name in self.tensors

    def read(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Read one tensor from disk, optionally converting its dtype."""
        info = self.tensors[name]
        with safe_open(info.file, framework="pt") as f:
            tensor = f.get_tensor(name)
        return tensor if dtype is None else tensor.to(dtype)

    def lm_head_name(self) -> str:
        """The tensor that holds the output projection (the embedding when tied)."""
        if self.config.tie_word_embeddings or "lm_head.weight" not in self.tensors:
            return "model.embed_tokens.weight"
        return "lm_head.weight"

    def iter_tensors(self, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) file by file, one tensor in memory at a time."""
        by_file: dict[Path, list[str]] = {}
        for info in self.tensors.values():
            by_file.setdefault(info.file, []).append(info.name)
        for path, names in by_file.items():
            with safe_open(path, framework="pt") as f:
                for name in sorted(names):
                    tensor = f.get_tensor(name)
                    yield name, tensor if dtype is None else tensor.to(dtype)

    def file_hashes(self) -> dict[str, str]:
        """sha256 of config.json and every weight file, for manifests."""
        paths = [self.directory / CONFIG_FILE, *self.files]
        return {p.name: sha256_file(p) for p in paths}


def _safetensors_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint; refuses pickle-only directories and escaping shards."""
    index = directory / INDEX_FILE
    single = directory / SINGLE_FILE
    if index.is_file():
        return _shards_from_index(directory, index)
    if single.is_file():
        return [single]
    pickles = [name for name in PICKLE_NAMES if (directory / name).exists()]
    if pickles:
        raise InputError(
            str(directory / pickles[0]),
            "pickle checkpoints are refused because loading them can execute code; "
            "convert to safetensors first",
        )
    raise InputError(str(directory), f"no {SINGLE_FILE} or {INDEX_FILE} found")


def _shards_from_index(directory: Path, index: Path) -> list[Path]:
    document = read_json(index)
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) and v and "\0" not in v for v in weight_map.values()):
        raise InputError(f"{index}: weight_map", "must map tensor names to file names")
    root = directory.resolve()
    shards: list[Path] = []
    for name in sorted(set(weight_map.values())):
        path = directory / name
        if Path(name).is_absolute() or root not in path.resolve().parents:
            raise InputError(f"{index}: weight_map", f"shard {name!r} lies outside the checkpoint directory")
        if not path.is_file():
            raise InputError(str(path), "shard named in the index is missing")
        shards.append(path)
    return shards


def _read_headers(files: list[Path]) -> dict[str, TensorInfo]:
    """Read every safetensors header; a malformed or truncated file is named in the error.

    `read_header` checks the header in plain Python and names the tensor at fault;
    the safetensors library then opens each file once more, so a rule it enforces
    that ours missed still ends as an InputError here, not when the tensor is read.
    """
    tensors: dict[str, TensorInfo] = {}
    for path in files:
        for name, entry in read_header(path).items():
            if name in tensors:
                raise InputError(str(path), f"tensor {name!r} also appears in {tensors[name].file.name}")
            tensors[name] = TensorInfo(name=name, file=path, dtype=entry.dtype, shape=entry.shape)
        _library_accepts(path)
    return tensors


def _library_accepts(path: Path) -> None:
    try:
        with safe_open(path, framework="pt") as f:
            f.keys()
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise InputError(str(path), f"not a readable safetensors file ({exc})") from None


def _check_tensors(config: Exaone4Config, tensors: dict[str, TensorInfo]) -> None:
    expected = expected_shapes(config)
    optional = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(tensors) - optional)
    head_missing = [name for name in config.head.head_tensors(config.hidden_size) if name in missing]
    if head_missing:  # a causal LM (or another head) given a head's config.json
        raise InputError("checkpoint", f"missing the {config.head.layout.task} head tensor(s) {', '.join(head_missing)} "
                         f"that {CONFIG_FILE}'s architectures ({config.head.head.value}) implies")
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError("checkpoint", f"missing tensors: {', '.join(missing[:3])}{more}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        info = tensors[unexpected[0]]
        raise InputError(
            str(info.file), f"unexpected tensor {unexpected[0]!r} for this config ({len(unexpected)} in all)"
        )
    for name, info in tensors.items():
        if info.shape != expected[name]:
            raise InputError(
                str(info.file), f"tensor {name!r} has shape {list(info.shape)}, expected {list(expected[name])}"
            )
        if info.dtype not in SUPPORTED_DTYPES:
            raise InputError(
                str(info.file), f"tensor {name!r} has dtype {info.dtype}; supported: {', '.join(SUPPORTED_DTYPES)}"
            )
