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
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir
import torch

from ..graphs.attention_function import OPSET, add_attention_function
from ..graphs.lower_ort import unsupported_reason as ort_unsupported_reason
from ..graphs.pipeline import KV_CACHES, LOGITS, TARGETS, run_pipeline
from .checkpoint import Checkpoint, sha256_file
from .config import load_config
from .errors import InputError
from .genai import genai_config
from .integrity import check_export_files
from .jsonfile import read_json
from .output_dir import staged_directory
from .stream import input_error_in
from .trace import trace
from .weights import bind_weights

MANIFEST = "export.json"
GENAI_CONFIG = "genai_config.json"
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
EXTERNAL_DATA_THRESHOLD = 1 << 30  # bytes of weights above which they go to model.onnx.data
DTYPES = {"float32": torch.float32, "float16": torch.float16}
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class ExportOptions:
    """What to export: the lowering target, the weight/activation dtype, and two graph options.

    `kv_cache="window"` bounds each sliding layer's cache to its last W - 1 slots
    (graphs/window_cache.py); "full" keeps every position in every layer.
    `logits="last"` outputs the last position's logits only (graphs/last_logits.py);
    "all" outputs every position's, as the IO contract's default.
    """

    target: str = "canonical"
    dtype: str = "float32"
    force: bool = False
    kv_cache: str = "full"
    logits: str = "all"

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise InputError("--target", f"{self.target!r} is not one of {', '.join(TARGETS)}")
        if self.dtype not in DTYPES:
            raise InputError("--dtype", f"{self.dtype!r} is not one of {', '.join(DTYPES)}")
        _check_choice("--kv-cache", self.kv_cache, KV_CACHES)
        _check_choice("--logits", self.logits, LOGITS)


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(option, f"{value!r} is not one of {', '.join(choices)}")


def _narrowed(option: str, source: str, asked: str | None, choices: tuple[str, str], directory: Path) -> str:
    """A lowering keeps its source's graph option or narrows it (choices[0] -> choices[1]), never widens.

    What a pass removed (cache slots, logits positions) cannot be put back without tracing again.
    """
    value = asked or source
    _check_choice(option, value, choices)
    if source == choices[1] and value == choices[0]:
        raise InputError(option, f"{directory} was exported with {option} {source}; export again for {value}")
    return value


def export_checkpoint(
    checkpoint_dir: Path,
    out: Path,
    options: ExportOptions = ExportOptions(),
    progress: Callable[[str], None] = lambda step: None,
) -> dict:
    """Export and return the manifest written to `out/export.json`."""
    options.validate()
    started = time.perf_counter()
    progress("reading checkpoint")
    checkpoint = Checkpoint.open(checkpoint_dir)
    _check_target(options.target, checkpoint.config.head_dim)
    with staged_directory(Path(out), marker=MANIFEST, force=options.force) as staging:
        dtype = DTYPES[options.dtype]
        progress("tracing with fake weights")
        model = trace(checkpoint.config, dtype)
        add_attention_function(model)
        written = []

        def weight_written(name: str) -> None:
            written.append(name)
            _advance(progress, len(written), total)

        total = bind_weights(model, checkpoint, dtype, on_written=weight_written)
        counts = run_pipeline(
            model, options.target, on_pass=lambda name: progress(f"pass {name}"),
            kv_cache=options.kv_cache, logits=options.logits,
        )
        model.producer_name, model.producer_version = "exaone4-export", _version()
        progress("streaming weights")
        files = save_model(model, staging)
        copy_side_files(checkpoint.directory, staging)
        manifest = _manifest(checkpoint, options, model, counts, files, time.perf_counter() - started)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
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
) -> dict:
    """Lower a canonical export to another target without tracing again; returns the new manifest.

    The canonical export is the interchange format: tracing happens once, and each
    backend's lowering is a graph-to-graph step on it. Weights are read lazily from
    the canonical files and streamed into the new output. `kv_cache` and `logits`
    None keep the canonical export's choice; "window" / "last" narrow a full one.
    """
    started = time.perf_counter()
    manifest = read_manifest(canonical_dir)
    if manifest["target"] != "canonical":
        raise InputError(str(canonical_dir), f"is a {manifest['target']!r} export; lowering starts from a canonical one")
    if target not in TARGETS:
        raise InputError("--target", f"{target!r} is not one of {', '.join(TARGETS)}")
    kv_cache = _narrowed("--kv-cache", manifest.get("kv_cache", "full"), kv_cache, KV_CACHES, canonical_dir)
    logits = _narrowed("--logits", manifest.get("logits", "all"), logits, LOGITS, canonical_dir)
    canonical_dir = Path(canonical_dir)
    _check_target(target, manifest["config"]["head_dim"])
    check_export_files(canonical_dir, manifest)
    with staged_directory(Path(out), marker=MANIFEST, force=force) as staging:
        progress("loading canonical graph")
        model = ir.load(canonical_dir / MODEL_FILE)
        counts = run_pipeline(
            model, target, on_pass=lambda name: progress(f"pass {name}"), kv_cache=kv_cache, logits=logits
        )
        progress("streaming weights")
        files = save_model(model, staging)
        copy_side_files(canonical_dir, staging)
        manifest = dict(
            manifest,
            target=target,
            kv_cache=kv_cache,
            logits=logits,
            io={"inputs": describe_io(model.graph.inputs), "outputs": describe_io(model.graph.outputs)},
            files=files,
            passes={**manifest["passes"], **{f"{target}:{name}": c for name, c in counts.items()}},
            lowered_from=str(canonical_dir.resolve()),
            export_seconds=round(manifest["export_seconds"] + time.perf_counter() - started, 2),
        )
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _write_genai_config(manifest, load_config(canonical_dir / "config.json"), staging)
    return manifest


def _check_target(target: str, head_dim: int) -> None:
    """Refuse a target whose runtime cannot run this architecture (before any work is done)."""
    reason = ort_unsupported_reason(head_dim) if target == "ort" else None
    if reason:
        raise InputError("--target", reason)


def _write_genai_config(manifest: dict, config, directory: Path) -> None:
    """An ort export with the default graph options also loads in onnxruntime-genai (docs/io-contract.md).

    A bounded window cache gives layers caches of different lengths, which
    onnxruntime-genai's one-length-for-all cache cannot hold, so none is written then;
    nor for last-position logits, which onnxruntime-genai's generator does not expect.
    """
    default = manifest.get("kv_cache", "full") == "full" and manifest.get("logits", "all") == "all"
    if manifest["target"] == "ort" and default:
        genai = genai_config(manifest, list(config.eos_token_ids), config.pad_token_id)
        (directory / GENAI_CONFIG).write_text(json.dumps(genai, indent=2) + "\n")


def _advance(progress, done: int, total: int) -> None:
    """Report counts when the progress callback is a `Progress` (plain callables only get steps)."""
    advance = getattr(progress, "advance", None)
    if advance:
        advance(done, total)


def copy_side_files(source: Path, destination: Path) -> None:
    """Config, generation config, tokenizer and chat template files, when present."""
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)


def save_model(model: ir.Model, directory: Path) -> dict[str, str]:
    """Save model.onnx (+ external data for big models); returns {file name: sha256}."""
    weight_bytes = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    try:
        if weight_bytes > EXTERNAL_DATA_THRESHOLD:
            ir.save(model, directory / MODEL_FILE, external_data=DATA_FILE)
        else:
            ir.save(model, directory / MODEL_FILE)
    except Exception as exc:  # a NaN weight found while streaming, wrapped by onnx_ir
        cause = input_error_in(exc)
        if cause is None:
            raise
        raise cause from None
    return {p.name: sha256_file(p) for p in (directory / MODEL_FILE, directory / DATA_FILE) if p.is_file()}


def describe_io(values) -> list[dict]:
    return [
        {"name": v.name, "dtype": v.dtype.name.lower(), "shape": [d if isinstance(d, int) else str(d) for d in v.shape]}
        for v in values
    ]


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


def _manifest(checkpoint, options, model, counts, files, seconds) -> dict:
    config = checkpoint.config
    return {
        "format": "exaone4-export/1",
        "target": options.target,
        "dtype": options.dtype,
        "kv_cache": options.kv_cache,
        "logits": options.logits,
        "opset": OPSET,
        "source": {
            "checkpoint": str(checkpoint.directory.resolve()),
            "storage_dtype": checkpoint.dtype,
            "sha256": checkpoint.file_hashes(),
        },
        "config": config.to_summary(),
        "layers": [
            {"index": i, "kind": spec.kind.value, "window": spec.window, "rope": spec.rope}
            for i, spec in enumerate(config.layers)
        ],
        "io": {"inputs": describe_io(model.graph.inputs), "outputs": describe_io(model.graph.outputs)},
        "files": files,
        "passes": counts,
        "tool_versions": _tool_versions(),
        "export_seconds": round(seconds, 2),
    }


def read_manifest(export_dir: Path) -> dict:
    """The manifest of an export directory; refuses directories this tool did not write."""
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        raise InputError(str(export_dir), f"not an export of this tool (no {MANIFEST})")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != "exaone4-export/1":
        raise InputError(str(path), "not a manifest of this tool (format is not exaone4-export/1)")
    return manifest
