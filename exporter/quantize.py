"""`exaone4-export quantize`: an fp8 (E4M3, explicit Q/DQ) export from a float export.

    quantize_export(Path("tiny-trt-fp16"), TINY_DIR, Path("tiny-trt-fp8"))

Calibrates on the reference model (exporter/calibrate.py), inserts Q/DQ around
the projection matmuls (graphs/quantize_fp8.py), and writes a new export whose
manifest records the scheme and every scale. The result runs in onnxruntime on
a CPU (so `verify` measures fp8 accuracy without a GPU) and builds into an fp8
TensorRT engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import onnx_ir as ir

from ..graphs.cleanup import cleanup
from ..graphs.quantize_fp8 import E4M3_MAX, quantize_fp8
from .calibrate import calibrate, calibration_ids
from .checkpoint import Checkpoint
from .errors import InputError
from .export import MANIFEST, MODEL_FILE, copy_side_files, describe_io, read_manifest, save_model
from .integrity import check_export_files
from .output_dir import staged_directory

MAX_CALIBRATION_TOKENS = 2048


def quantize_export(
    export_dir: Path,
    checkpoint_dir: Path,
    out: Path,
    calib_file: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda step: None,
) -> dict:
    started = time.perf_counter()
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    if manifest.get("quantization"):
        raise InputError(str(export_dir), "is already quantized; quantize a float export")
    check_export_files(export_dir, manifest)
    checkpoint = Checkpoint.open(checkpoint_dir)
    if checkpoint.config.to_summary() != manifest["config"]:
        raise InputError(str(checkpoint_dir), f"its architecture differs from the one {export_dir} was exported from")
    with staged_directory(Path(out), marker=MANIFEST, force=force) as staging:
        progress("calibrating on the reference model")
        ids, source = calibration_ids(export_dir, calib_file, MAX_CALIBRATION_TOKENS)
        calibration = calibrate(checkpoint, ids, source)
        progress("inserting Q/DQ")
        model = ir.load(export_dir / MODEL_FILE)
        counts = {"quantize_fp8": quantize_fp8(model, calibration.activation_amax, calibration.weight_amax),
                  "cleanup": cleanup(model)}
        progress("streaming weights")
        files = save_model(model, staging)
        copy_side_files(export_dir, staging)
        manifest = dict(
            manifest,
            io={"inputs": describe_io(model.graph.inputs), "outputs": describe_io(model.graph.outputs)},
            files=files,
            passes={**manifest["passes"], **{f"fp8:{name}": c for name, c in counts.items()}},
            quantized_from=str(export_dir.resolve()),
            quantization={
                "format": "fp8",
                "scheme": "FLOAT8E4M3FN Q/DQ on every projection matmul: per-tensor activation scales, "
                          "per-output-channel weight scales (amax / 448); lm_head, norms and attention softmax unquantized",
                "e4m3_max": E4M3_MAX,
                **calibration.to_dict(),
            },
            export_seconds=round(manifest["export_seconds"] + time.perf_counter() - started, 2),
        )
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
