"""`exaone4-export quantize`: an fp8 (E4M3, explicit Q/DQ) export from a float export.

    quantize_export(Path("tiny-trt-fp16"), TINY_DIR, Path("tiny-trt-fp8"))

Calibrates on the reference model (exporter/calibrate.py), inserts Q/DQ around
the projection matmuls (graphs/quantize_fp8.py), and writes a new export whose
manifest records the scheme and every scale. The result runs in onnxruntime on
a CPU (so `verify` measures fp8 accuracy without a GPU) and builds into an fp8
TensorRT engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import onnx_ir as ir

from ..graphs.cleanup import cleanup
from ..graphs.quantize_fp8 import E4M3_MAX, quantize_fp8
from .artifacts import ExportDir, ExportManifest
from .calibrate import calibrate, calibration_ids
from .checkpoint import Checkpoint
from .contract import EXPORT_MANIFEST
from .errors import InputError
from .export import copy_side_files, describe_io, save_model
from .heads import require_causal_lm
from .output_dir import staged_directory

MAX_CALIBRATION_TOKENS = 2048


def quantize_export(
    export_dir: Path,
    checkpoint_dir: Path,
    out: Path,
    calib_file: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda step: None,
) -> ExportManifest:
    """Write the fp8 export of `export_dir` to `out`; returns its manifest."""
    started = time.perf_counter()
    source = ExportDir.open(export_dir)
    require_causal_lm(source.config.head, str(source.directory), "quantize (calibrated on the decoder's logits)")
    if source.manifest.quantization:
        raise InputError(str(source.directory), "is already quantized; quantize a float export")
    checkpoint = Checkpoint.open(checkpoint_dir)
    source.check_architecture(checkpoint.config, checkpoint_dir)
    with staged_directory(Path(out), marker=EXPORT_MANIFEST, force=force) as staging:
        progress("calibrating on the reference model")
        ids, text_source = calibration_ids(source.directory, calib_file, MAX_CALIBRATION_TOKENS)
        calibration = calibrate(checkpoint, ids, text_source)
        progress("inserting Q/DQ")
        model = ir.load(source.model_path)
        counts = {"quantize_fp8": quantize_fp8(model, calibration.activation_amax, calibration.weight_amax),
                  "cleanup": cleanup(model)}
        progress("streaming weights")
        files = save_model(model, staging)
        copy_side_files(source.directory, staging)
        manifest = replace(
            source.manifest,
            inputs=describe_io(model.graph.inputs),
            outputs=describe_io(model.graph.outputs),
            files=files,
            passes={**source.manifest.passes, **{f"fp8:{name}": c for name, c in counts.items()}},
            quantized_from=str(source.directory.resolve()),
            quantization={
                "format": "fp8",
                "scheme": "FLOAT8E4M3FN Q/DQ on every projection matmul: per-tensor activation scales, "
                          "per-output-channel weight scales (amax / 448); lm_head, norms and attention softmax unquantized",
                "e4m3_max": E4M3_MAX,
                **calibration.to_dict(),
            },
            export_seconds=round(source.manifest.export_seconds + time.perf_counter() - started, 2),
        )
        manifest.write(staging)
    return manifest
