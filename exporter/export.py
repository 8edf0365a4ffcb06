"""Export a checkpoint to ONNX: trace, bind weights lazily, run the target's passes, save.

    export_checkpoint(Path("ckpt"), Path("out"), ExportOptions(target="ort"))

The result is a directory holding `model.onnx` (plus `model.onnx.data` when the
weights exceed what one protobuf may hold), the tokenizer and config files of
the checkpoint, and `export.json`, the manifest (docs/io-contract.md). Memory
stays flat in model size: the model is traced with fake weights and the real
ones are streamed from safetensors into the output one tensor at a time.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import onnx_ir as ir
import torch

from ..graphs.attention_function import OPSET, add_attention_function
from ..graphs.lower_ort import unsupported_reason as ort_unsupported_reason
from ..graphs.pipeline import KV_CACHES, LOGITS, STATIC_TARGETS, TARGETS, run_pipeline
from .artifacts import ExportDir, ExportManifest, LayerRecord, TensorSpec
from .cache_budget import DEFAULT_BUDGET_GIB, static_context
from .checkpoint import Checkpoint
from .contract import DATA_FILE, EXPORT_DTYPES, EXPORT_MANIFEST, GENAI_CONFIG, MODEL_FILE, SIDE_FILES, dtype
from .errors import InputError
from .genai import genai_config
from .heads import Head, HeadConfig, require_causal_lm
from .jsonfile import sha256_file
from .output_dir import staged_directory
from .stream import input_error_in
from .trace import trace
from .weights import bind_weights

EXTERNAL_DATA_THRESHOLD = 1 << 30  # bytes of weights above which they go to model.onnx.data


@dataclass(frozen=True)
class ExportOptions:
    """What to export: the lowering target, the weight/activation dtype, and two graph options.

    `kv_cache="window"` bounds each sliding layer's cache to its last W - 1 slots
    (graphs/window_cache.py); "full" keeps every position in every layer.
    `logits="last"` outputs the last position's logits only (graphs/last_logits.py);
    "all" outputs every position's, as the IO contract's default.
    `kv_cache="static"` (target ort) keeps one in-place buffer of `max_context` slots
    per layer (graphs/lower_ort_static.py; 0: as many as `kv_budget_gib` allows).
    """

    target: str = "canonical"
    dtype: str = "float32"
    force: bool = False
    kv_cache: str = "full"
    logits: str = "all"
    max_context: int = 0
    kv_budget_gib: float = DEFAULT_BUDGET_GIB

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise InputError("--target", f"{self.target!r} is not one of {', '.join(TARGETS)}")
        if self.dtype not in EXPORT_DTYPES:
            raise InputError("--dtype", f"{self.dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
        _check_choice("--kv-cache", self.kv_cache, KV_CACHES)
        _check_choice("--logits", self.logits, LOGITS)
        _check_static(self.kv_cache, self.target)


def _check_static(kv_cache: str, target: str) -> None:
    if kv_cache == "static" and target not in STATIC_TARGETS:
        raise InputError("--kv-cache", f"static (an in-place cache) needs --target {' or '.join(STATIC_TARGETS)}, not {target}")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(option, f"{value!r} is not one of {', '.join(choices)}")


# What a lowering may change a graph option to: what a pass removed (cache slots, logits
# positions) cannot be put back without tracing again.
LOWERINGS = {"--kv-cache": {("full", "window"), ("full", "static")}, "--logits": {("all", "last")}}


def _narrowed(option: str, source: str, asked: str | None, choices: tuple[str, ...], directory: Path) -> str:
    """A lowering keeps its source's graph option or narrows it (LOWERINGS), never widens."""
    value = asked or source
    _check_choice(option, value, choices)
    if value != source and (source, value) not in LOWERINGS[option]:
        raise InputError(option, f"{directory} was exported with {option} {source}; export again for {value}")
    return value


def export_checkpoint(
    checkpoint_dir: Path,
    out: Path,
    options: ExportOptions = ExportOptions(),
    progress: Callable[[str], None] = lambda step: None,
) -> ExportManifest:
    """Export and return the manifest written to `out/export.json`."""
    options.validate()
    started = time.perf_counter()
    progress("reading checkpoint")
    checkpoint = Checkpoint.open(checkpoint_dir)
    _check_target(options.target, checkpoint.config.head_dim)
    _check_head_options(checkpoint.config.head, options.kv_cache, options.logits, options.max_context)
    max_context = _max_context(options.kv_cache, checkpoint.config, options.dtype, options.max_context, options.kv_budget_gib)
    with staged_directory(Path(out), marker=EXPORT_MANIFEST, force=options.force) as staging:
        torch_dtype = getattr(torch, options.dtype)
        progress("tracing with fake weights")
        model = trace(checkpoint.config, torch_dtype)
        add_attention_function(model)
        written = []

        def weight_written(name: str) -> None:
            written.append(name)
            _advance(progress, len(written), total)

        total = bind_weights(model, checkpoint, torch_dtype, on_written=weight_written)
        counts = run_pipeline(
            model, options.target, on_pass=lambda name: progress(f"pass {name}"),
            kv_cache=options.kv_cache, logits=options.logits,
        )
        model.producer_name, model.producer_version = "exaone4-export", _version()
        progress("streaming weights")
        files = save_model(model, staging)
        copy_side_files(checkpoint.directory, staging)
        manifest = _manifest(checkpoint, options, model, counts, files, time.perf_counter() - started)
        manifest = replace(manifest, max_context=max_context)
        manifest.write(staging)
        _write_genai_config(manifest, checkpoint.config, staging)
    return manifest


def lower_export(
    canonical_dir: Path,
    out: Path,
    target: str,
    force: bool = False,
    progress: Callable[[str], None] = lambda step: None,
    kv_cache: str | None = None,
    logits: str | None = None,
    max_context: int = 0,
    kv_budget_gib: float = DEFAULT_BUDGET_GIB,
) -> ExportManifest:
    """Lower a canonical export to another target without tracing again; returns the new manifest.

    The canonical export is the interchange format: tracing happens once, and each
    backend's lowering is a graph-to-graph step on it. Weights are read lazily from
    the canonical files and streamed into the new output. `kv_cache` and `logits`
    None keep the canonical export's choice; "window" / "last" narrow a full one.
    """
    started = time.perf_counter()
    source = ExportDir.open(canonical_dir, check_files=False)
    if source.manifest.target != "canonical":
        raise InputError(str(canonical_dir), f"is a {source.manifest.target!r} export; lowering starts from a canonical one")
    if target not in TARGETS:
        raise InputError("--target", f"{target!r} is not one of {', '.join(TARGETS)}")
    kv_cache = _narrowed("--kv-cache", source.manifest.kv_cache, kv_cache, KV_CACHES, source.directory)
    logits = _narrowed("--logits", source.manifest.logits, logits, LOGITS, source.directory)
    _check_static(kv_cache, target)
    _check_target(target, source.config.head_dim)
    _check_head_options(source.config.head, kv_cache, logits, max_context)
    max_context = _max_context(kv_cache, source.config, source.manifest.dtype, max_context, kv_budget_gib)
    source = ExportDir.open(canonical_dir)  # options are fine: now pay for the hashes
    with staged_directory(Path(out), marker=EXPORT_MANIFEST, force=force) as staging:
        progress("loading canonical graph")
        model = ir.load(source.model_path)
        counts = run_pipeline(
            model, target, on_pass=lambda name: progress(f"pass {name}"), kv_cache=kv_cache, logits=logits
        )
        progress("streaming weights")
        files = save_model(model, staging)
        copy_side_files(source.directory, staging)
        manifest = replace(
            source.manifest,
            target=target,
            kv_cache=kv_cache,
            logits=logits,
            max_context=max_context,
            inputs=describe_io(model.graph.inputs),
            outputs=describe_io(model.graph.outputs),
            files=files,
            passes={**source.manifest.passes, **{f"{target}:{name}": c for name, c in counts.items()}},
            lowered_from=str(source.directory.resolve()),
            export_seconds=round(source.manifest.export_seconds + time.perf_counter() - started, 2),
        )
        manifest.write(staging)
        _write_genai_config(manifest, source.config, staging)
    return manifest


def _max_context(kv_cache: str, config, dtype: str, asked: int, budget_gib: float) -> int | None:
    """The in-place buffers' slots for a static cache (cache_budget.py); None otherwise, where --max-context is refused."""
    if kv_cache == "static":
        return static_context(config, dtype, asked, budget_gib)
    if asked:
        raise InputError("--max-context", "sizes an in-place cache: it needs --kv-cache static")
    return None


def _check_head_options(head: HeadConfig, kv_cache: str, logits: str, max_context: int) -> None:
    """A head is one forward without a KV cache: the cache and logits options are a causal LM's."""
    for option, value, default in (("--kv-cache", kv_cache, "full"), ("--logits", logits, "all")):
        if value != default:
            require_causal_lm(head, option, f"{option} {value}")
    if max_context:
        require_causal_lm(head, "--max-context", "an in-place KV cache")


def _check_target(target: str, head_dim: int) -> None:
    """Refuse a target whose runtime cannot run this architecture (before any work is done)."""
    reason = ort_unsupported_reason(head_dim) if target == "ort" else None
    if reason:
        raise InputError("--target", reason)


def _write_genai_config(manifest: ExportManifest, config, directory: Path) -> None:
    """An ort export with the default graph options also loads in onnxruntime-genai (docs/io-contract.md).

    A bounded window cache gives layers caches of different lengths, which
    onnxruntime-genai's one-length-for-all cache cannot hold, so none is written then;
    nor for last-position logits, which onnxruntime-genai's generator does not expect.
    An in-place cache is genai's `past_present_share_buffer` mode, at max_context.
    """
    causal = manifest.head is Head.CAUSAL_LM  # onnxruntime-genai generates; a head has nothing to generate
    if causal and manifest.target == "ort" and manifest.kv_cache in ("full", "static") and manifest.logits == "all":
        genai = genai_config(config, shared_buffer_length=manifest.max_context)
        (directory / GENAI_CONFIG).write_text(json.dumps(genai, indent=2) + "\n")


def _advance(progress, done: int, total: int) -> None:
    """Report counts when the progress callback is a `Progress` (plain callables only get steps)."""
    advance = getattr(progress, "advance", None)
    if advance:
        advance(done, total)


def copy_side_files(source: Path, destination: Path) -> None:
    """Config, generation config, tokenizer and chat template files, when present."""
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)


def save_model(model: ir.Model, directory: Path) -> dict[str, str]:
    """Save model.onnx (+ external data for big models); returns {file name: sha256}."""
    weight_bytes = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    try:
        if weight_bytes > EXTERNAL_DATA_THRESHOLD:
            ir.save(model, directory / MODEL_FILE, external_data=DATA_FILE)
        else:  # a graph loaded from external data and since shrunk (int8/int4 weights): its tensors go inline
            ir.external_data.load_to_model(model)
            ir.save(model, directory / MODEL_FILE)
    except Exception as exc:  # a NaN weight found while streaming, wrapped by onnx_ir
        cause = input_error_in(exc)
        if cause is None:
            raise
        raise cause from None
    return {p.name: sha256_file(p) for p in (directory / MODEL_FILE, directory / DATA_FILE) if p.is_file()}


def describe_io(values) -> tuple[TensorSpec, ...]:
    """Graph inputs or outputs as TensorSpecs (dtype in the contract's spelling, symbolic dims as names)."""
    return tuple(
        TensorSpec(v.name, dtype(v.dtype.name).name, tuple(d if isinstance(d, int) else str(d) for d in v.shape))
        for v in values
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("exaone4-export")
    except PackageNotFoundError:
        return "0+unknown"


def _tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    return {
        "exaone4-export": _version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnx_ir": ir.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _manifest(checkpoint, options, model, counts, files, seconds) -> ExportManifest:
    config = checkpoint.config
    return ExportManifest(
        target=options.target,
        dtype=options.dtype,
        kv_cache=options.kv_cache,
        logits=options.logits,
        opset=OPSET,
        source={
            "checkpoint": str(checkpoint.directory.resolve()),
            "storage_dtype": checkpoint.dtype,
            "sha256": checkpoint.file_hashes(),
        },
        config=config.to_summary(),
        layers=tuple(LayerRecord(i, spec.kind.value, spec.window, spec.rope) for i, spec in enumerate(config.layers)),
        inputs=describe_io(model.graph.inputs),
        outputs=describe_io(model.graph.outputs),
        files=files,
        passes=counts,
        tool_versions=_tool_versions(),
        export_seconds=round(seconds, 2),
        **ExportManifest.head_fields(config.head),
    )
