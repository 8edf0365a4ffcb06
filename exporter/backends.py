"""Open MODEL (a checkpoint or an export directory) as a runner for a chosen backend.

A directory with `export.json` is an export; one with `config.json` and
safetensors weights is a checkpoint. The torch backend needs a checkpoint (an
export records where its checkpoint was, and that is used when it still
exists); the ort backend needs an export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import Checkpoint
from .config import Exaone4Config, load_config
from .errors import InputError
from .export import MANIFEST, read_manifest
from .integrity import check_export_files
from .load import load_reference_model
from .runners import CacheLayout, OrtRunner, Runner, TorchRunner

BACKENDS = ("torch", "ort", "trt")


@dataclass
class Backend:
    """A runner plus what is needed to drive it: config, cache layout, tokenizer directory."""

    runner: Runner
    config: Exaone4Config
    layout: CacheLayout
    tokenizer_dir: Path


def is_export(directory: Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def is_engine(directory: Path) -> bool:
    return (Path(directory) / "build.json").is_file()


def open_backend(model_dir: Path, backend: str | None = None, threads: int = 0) -> Backend:
    """A runner for MODEL; the default backend is ort for exports and torch for checkpoints."""
    model_dir = Path(model_dir)
    exported = is_export(model_dir)
    engine = is_engine(model_dir)
    backend = backend or ("trt" if engine else "ort" if exported else "torch")
    if backend not in BACKENDS:
        raise InputError("--backend", f"{backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "trt" or engine:
        return _open_engine(model_dir, backend)
    if backend == "ort":
        if not exported:
            raise InputError(str(model_dir), "the ort backend runs an export; run `exaone4-export export` first")
        manifest = read_manifest(model_dir)
        check_export_files(model_dir, manifest)
        config = load_config(model_dir / "config.json")
        dtype = np.float16 if manifest["dtype"] == "float16" else np.float32
        return Backend(OrtRunner(model_dir, threads=threads), config, CacheLayout.of(config, dtype), model_dir)
    checkpoint_dir = model_dir
    if exported:
        checkpoint_dir = Path(read_manifest(model_dir)["source"]["checkpoint"])
        if not checkpoint_dir.is_dir():
            raise InputError(str(model_dir), f"its source checkpoint {checkpoint_dir} is gone; pass the checkpoint")
    checkpoint = Checkpoint.open(checkpoint_dir)
    model = load_reference_model(checkpoint)
    return Backend(TorchRunner(model), checkpoint.config, CacheLayout.of(checkpoint.config), checkpoint_dir)


def _open_engine(engine_dir: Path, backend: str) -> Backend:
    """A TensorRT engine directory: only the trt backend runs it, and only on a GPU."""
    from .trt_runner import TrtRunner, unavailable_reason

    if not is_engine(engine_dir):
        raise InputError(str(engine_dir), "the trt backend runs an engine directory (exaone4-export build)")
    if backend != "trt":
        raise InputError(str(engine_dir), f"is a TensorRT engine; the {backend} backend cannot run it")
    reason = unavailable_reason()
    if reason:
        raise InputError("--backend trt", reason)
    config = load_config(engine_dir / "config.json")
    return Backend(TrtRunner(engine_dir), config, CacheLayout.of(config, np.float16), engine_dir)
