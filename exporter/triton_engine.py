"""The resident engine's Triton models, for an export with an in-place KV cache (`--kv-cache static`).

    REPO/
      exaone4_stream/   decoupled Python-backend model that owns the engine: the onnxruntime session,
                        max_batch slots of max_context positions allocated once, the in-flight batching
                        scheduler (exporter/serving/) on its own thread; one response per piece of text
      exaone4/          plain request/response: forwards the request to exaone4_stream over BLS and
                        answers with the whole text, so plain and streaming requests batch together
      README.md

The knobs (EngineConfig: max_batch, max_context, max_queue, prefill_chunk, threads)
are config.pbtxt parameters of exaone4_stream, read when the model loads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .artifacts import ExportDir
from .contract import GENERATION_SPEC_FILE, MODEL_FILE
from .errors import InputError
from .serving.config import EngineConfig, EngineSpec
from .serving.slots import pool_bytes, pool_lengths, pool_max_chunk
from .triton_parts import GENERATE, MODELS_DIR, STREAM, config_parameters, generation_config, ship_chat_code

ENGINE_KNOB = "max_batch"  # a parameter only the engine's config has: how `--check` tells the layouts apart
FRONT_ENGINE, FRONT_WORKERS = "engine_model", "workers"  # the front's parameters
GIB = 1 << 30


def engine_config_for(export: ExportDir, asked: EngineConfig | None) -> EngineConfig:
    """The knobs asked for (defaults otherwise), with max_context the export's unless a smaller one is asked."""
    slots = export.static_context
    config = asked or EngineConfig(max_context=slots)
    if config.max_context > slots:
        raise InputError("--max-context", f"{config.max_context} exceeds the export's in-place cache of {slots} positions")
    chunk = pool_max_chunk(export.cache_layout(), config.max_context)
    if min(config.prefill_chunk, config.max_context) > chunk:  # only a ring that wraps bounds the chunk below the context
        raise InputError("--prefill-chunk", f"{config.prefill_chunk} exceeds {chunk}: the export's sliding layers keep rings, "
                         f"exact for at most {chunk} tokens a call")
    return config


def write_engine_models(staging: Path, export: ExportDir, chat: list[Path], asked: EngineConfig | None, instances: int,
                        env: dict[str, str]) -> dict:
    """exaone4_stream (the engine) and exaone4 (its BLS front) into `staging`; returns the summary `triton` prints."""
    config = engine_config_for(export, asked)
    layout = export.cache_layout()
    version = staging / STREAM / "1"
    version.mkdir(parents=True)
    shutil.copyfile(MODELS_DIR / "engine.py", version / "model.py")
    for path in export.graph_files:
        shutil.copyfile(path, version / path.name)
    for file in chat:
        shutil.copyfile(file, version / file.name)
    spec = EngineSpec(layout, export.static_context)
    (version / GENERATION_SPEC_FILE).write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    ship_chat_code(version)
    (staging / STREAM / "config.pbtxt").write_text(generation_config(STREAM, True, 1, {**config.parameters(), **env}))
    front = staging / GENERATE / "1"
    front.mkdir(parents=True)
    shutil.copyfile(MODELS_DIR / "front.py", front / "model.py")
    ship_chat_code(front)
    workers = str(config.max_batch + config.max_queue)  # a thread per request the engine can hold
    (staging / GENERATE / "config.pbtxt").write_text(
        generation_config(GENERATE, False, instances, {FRONT_ENGINE: STREAM, FRONT_WORKERS: workers, **env}))
    kv_bytes = pool_bytes(layout, config.max_batch, config.max_context)
    rings = [length for length in pool_lengths(layout, config.max_context) if length < config.max_context]
    kept = f"; {len(rings)} sliding layers keep rings of {max(rings)}" if rings else ""
    per_slot = kv_bytes / config.max_batch / 2**20
    memory = (f"KV cache: {config.max_batch} slots x {per_slot:.2f} MiB ({config.max_context} positions{kept}) = "
              f"{kv_bytes / GIB:.3f} GiB, allocated once when {STREAM} loads")
    return {"runtime": "python-ort", "models": [GENERATE, STREAM], "layout": "engine", "engine": config,
            "kv_cache_bytes": kv_bytes, "memory": memory}


def check_engine_models(config, model_dir: Path) -> list[str]:
    """The engine's knobs parse, its graph and spec are there, and its max_context fits the export's positions."""
    problems, knobs = [], None
    try:
        knobs = EngineConfig.from_parameters(config_parameters(config), str(model_dir / "config.pbtxt"))
    except InputError as exc:
        problems.append(str(exc))
    for version in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        if not (version / MODEL_FILE).is_file():
            problems.append(f"{version / MODEL_FILE}: missing (the engine's graph)")
        try:
            spec = EngineSpec.read(version / GENERATION_SPEC_FILE)
            if knobs:
                spec.check(knobs, str(model_dir / "config.pbtxt"))
        except InputError as exc:
            problems.append(str(exc))
    return problems
