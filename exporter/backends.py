"""Open MODEL (a checkpoint, an export or an engine directory) as a runner for a chosen backend.

A directory with `export.json` is an export, one with `build.json` an engine, one
with `config.json` and safetensors weights a checkpoint. The torch backend needs a
checkpoint (an export records where its checkpoint was, and that is used when it
still exists). The ort backend runs an export; given a checkpoint, it exports one
into the export cache first (exporter/export_cache.py) and reuses it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .artifacts import EngineDir, ExportDir
from .checkpoint import Checkpoint
from .config import Exaone4Config
from .contract import CacheLayout
from .errors import InputError
from .heads import require_causal_lm
from .load import load_reference_model
from .runners import OrtRunner, Runner, TorchRunner

BACKENDS = ("torch", "ort", "trt")


@dataclass
class Backend:
    """A runner plus what is needed to drive it: config, cache layout, tokenizer directory."""

    runner: Runner
    config: Exaone4Config
    layout: CacheLayout
    tokenizer_dir: Path


def open_backend(
    model_dir: Path,
    backend: str | None = None,
    threads: int = 0,
    cache_dir: Path | None = None,
    notice: Callable[[str], None] = lambda message: None,
) -> Backend:
    """A runner for MODEL; the default backend is trt for engines, ort for exports, torch for checkpoints.

    `cache_dir` is where `--backend ort` on a checkpoint keeps its export; `notice`
    hears where that export is and whether it was reused.
    """
    model_dir = Path(model_dir)
    exported, engine = ExportDir.exists(model_dir), EngineDir.exists(model_dir)
    backend = backend or ("trt" if engine else "ort" if exported else "torch")
    if backend not in BACKENDS:
        raise InputError("--backend", f"{backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "trt" or engine:
        return _open_engine(model_dir, backend)
    if exported:  # a head export is refused before anything is loaded
        require_causal_lm(ExportDir.open(model_dir, check_files=False).config.head, str(model_dir), "generate")
    if backend == "ort":
        if exported:
            return _ort_backend(ExportDir.open(model_dir), model_dir, threads)
        from .export_cache import cached_export

        checkpoint = Checkpoint.open(model_dir)
        require_causal_lm(checkpoint.config.head, str(model_dir), "generate")
        return _ort_backend(cached_export(checkpoint, cache_dir, notice), checkpoint.directory, threads)
    checkpoint_dir = model_dir
    if exported:
        checkpoint_dir = ExportDir.open(model_dir, check_files=False).manifest.checkpoint_dir
        if not checkpoint_dir.is_dir():
            raise InputError(str(model_dir), f"its source checkpoint {checkpoint_dir} is gone; pass the checkpoint")
    checkpoint = Checkpoint.open(checkpoint_dir)
    require_causal_lm(checkpoint.config.head, str(model_dir), "generate")
    model = load_reference_model(checkpoint)
    return Backend(TorchRunner(model), checkpoint.config, CacheLayout.of(checkpoint.config), checkpoint_dir)


def _ort_backend(export: ExportDir, tokenizer_dir: Path, threads: int) -> Backend:
    runner = OrtRunner(export.model_path, threads=threads, static_context=export.static_context)
    return Backend(runner, export.config, export.cache_layout(), tokenizer_dir)


def _open_engine(engine_dir: Path, backend: str) -> Backend:
    """A TensorRT engine directory: only the trt backend runs it, and only on a GPU."""
    from .trt.provider import gpu_unavailable_reason

    if not EngineDir.exists(engine_dir):
        raise InputError(str(engine_dir), "the trt backend runs an engine directory (exaone4-export build)")
    if backend != "trt":
        raise InputError(str(engine_dir), f"is a TensorRT engine; the {backend} backend cannot run it")
    reason = gpu_unavailable_reason()
    if reason:
        raise InputError("--backend trt", reason)
    from .trt.runner import TrtRunner

    runner = TrtRunner(engine_dir)
    return Backend(runner, runner.artifact.config, runner.artifact.cache_layout(), engine_dir)
