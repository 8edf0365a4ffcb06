"""`exaone4-export quantize --weights int8|int4`: weight-only quantized `ort` exports (MatMulNBits).

    quantize_weights_export(Path("tiny-ort"), TINY_DIR, Path("tiny-int4"), WeightOptions("int4"))

Every projection becomes onnxruntime's `MatMulNBits` (graphs/matmul_nbits.py), packed by
onnxruntime's own quantizer; a tied embedding and lm_head become one packed tensor read by
`GatherBlockQuantized` and `MatMulNBits` (graphs/tied_embedding_nbits.py). Methods: `rtn`
(round to nearest, per block) and `calibrated` (GPTQ on the reference model's activations over
the fp8 calibration text, exporter/gptq.py). Activations, norms, attention and the KV cache stay
in the export's float dtype. The manifest records format, block size, method, accuracy_level
and the weights' bytes before and after (docs/io-contract.md).

Refused before anything is written (exit 2, one line naming the option): a non-`ort` export,
a block size that does not divide some weight's input dimension, calibration text shorter
than one block.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import onnx_ir as ir

from ..graphs.cleanup import cleanup
from ..graphs.matmul_nbits import quantize_matmuls_nbits
from ..graphs.tied_embedding_nbits import find_tied_pair, quantize_tied_embedding
from .artifacts import ExportDir, ExportManifest
from .calibrate import WEIGHT_SUFFIX, calibration_ids
from .checkpoint import Checkpoint
from .contract import EXPORT_MANIFEST, GENAI_CONFIG
from .errors import InputError
from .export import copy_side_files, describe_io, save_model
from .heads import require_causal_lm
from .output_dir import staged_directory

WEIGHT_BITS = {"int8": 8, "int4": 4}
BLOCK_SIZES = (32, 64, 128)
METHODS = ("rtn", "calibrated")
DEFAULT_BLOCK_SIZE = 32
# MatMulNBits' accuracy_level per format: 4 quantizes the activations to int8 per block and
# computes in int8 (MLAS' integer kernels), 0 computes in fp32 from dequantized weights.
# Chosen by measurement on the 1.2B shape (docs/benchmarks.md, "Weight-only int8 / int4").
ACCURACY_LEVEL = {"int8": 4, "int4": 4}
SYMMETRIC = False  # asymmetric blocks (a zero point each): see docs/benchmarks.md for the comparison
MAX_CALIBRATION_TOKENS = 2048
LM_HEAD = "lm_head"  # the reference model's module name (exporter/model.py)


@dataclass(frozen=True)
class WeightOptions:
    weights: str  # "int8" or "int4"
    block_size: int = DEFAULT_BLOCK_SIZE
    method: str = "rtn"
    lm_head: str = "int8"  # the lm_head's (and a tied embedding's) width: int4 there costs the most accuracy (docs/benchmarks.md)
    accuracy_level: int | None = None  # None: ACCURACY_LEVEL[weights]
    symmetric: bool = SYMMETRIC

    @property
    def bits(self) -> int:
        return WEIGHT_BITS[self.weights]

    @property
    def lm_head_bits(self) -> int:
        return WEIGHT_BITS[self.lm_head]

    @property
    def level(self) -> int:
        return ACCURACY_LEVEL[self.weights] if self.accuracy_level is None else self.accuracy_level


def quantize_weights_export(
    export_dir: Path,
    checkpoint_dir: Path,
    out: Path,
    options: WeightOptions,
    calib_file: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda step: None,
) -> ExportManifest:
    """Write the int8 / int4 export of the ort export `export_dir` to `out`; returns its manifest."""
    started = time.perf_counter()
    _check_options(options, calib_file)
    source = ExportDir.open(export_dir)
    require_causal_lm(source.config.head, str(source.directory), "quantize --weights")
    manifest = source.manifest
    if manifest.quantization:
        raise InputError(str(source.directory), "is already quantized; quantize a float export")
    if manifest.target != "ort":
        raise InputError("--weights", f"{options.weights} needs an ort export (MatMulNBits is an onnxruntime operator); "
                                      f"{source.directory} is a '{manifest.target}' export")
    checkpoint = Checkpoint.open(checkpoint_dir)
    source.check_architecture(checkpoint.config, checkpoint_dir)
    model = ir.load(source.model_path)
    _check_block_size(model, options.block_size)
    ids = text_source = None
    if options.method == "calibrated":
        ids, text_source = calibration_ids(source.directory, calib_file, MAX_CALIBRATION_TOKENS)
        if len(ids) < options.block_size:
            raise InputError("--calib", f"has {len(ids)} tokens; calibration needs at least one block (--block-size {options.block_size})")
    with staged_directory(Path(out), marker=EXPORT_MANIFEST, force=force) as staging:
        rounded = {}
        if ids is not None:
            from .gptq import gptq_weights

            progress("GPTQ on the reference model")
            rounded = gptq_weights(checkpoint, ids, options.bits, options.block_size, options.symmetric, options.lm_head_bits)
        progress("packing weights (MatMulNBits)")
        level = options.level
        counts = {"tied_embedding_nbits": quantize_tied_embedding(model, options.lm_head_bits, options.block_size, options.symmetric,
                                                                  level)}
        counts["matmul_nbits"] = quantize_matmuls_nbits(model, options.bits, options.block_size, options.symmetric, level,
                                                        weights=rounded, bits_of=_lm_head_bits(model, options))
        counts["cleanup"] = cleanup(model)
        progress("writing")
        files = save_model(model, staging)
        copy_side_files(source.directory, staging)
        if (source.directory / GENAI_CONFIG).is_file():  # same IO; onnxruntime-genai runs MatMulNBits (tested)
            shutil.copyfile(source.directory / GENAI_CONFIG, staging / GENAI_CONFIG)
        result = replace(
            manifest,
            inputs=describe_io(model.graph.inputs),
            outputs=describe_io(model.graph.outputs),
            files=files,
            passes={**manifest.passes, **{f"{options.weights}:{name}": c for name, c in counts.items()}},
            quantized_from=str(source.directory.resolve()),
            quantization=_record(options, counts, source, files, staging, text_source, len(ids or ())),
            export_seconds=round(manifest.export_seconds + time.perf_counter() - started, 2),
        )
        result.write(staging)
    return result


def _check_options(options: WeightOptions, calib_file: Path | None) -> None:
    if options.weights not in WEIGHT_BITS:
        raise InputError("--weights", f"{options.weights!r} is not one of fp8, {', '.join(WEIGHT_BITS)}")
    if options.block_size not in BLOCK_SIZES:
        raise InputError("--block-size", f"{options.block_size} is not one of {', '.join(map(str, BLOCK_SIZES))}")
    if options.method not in METHODS:
        raise InputError("--method", f"{options.method!r} is not one of {', '.join(METHODS)}")
    if options.lm_head not in WEIGHT_BITS:
        raise InputError("--lm-head", f"{options.lm_head!r} is not one of {', '.join(WEIGHT_BITS)}")
    if calib_file is not None and options.method != "calibrated":
        raise InputError("--calib", "is read by --method calibrated only (rtn needs no data)")


def _check_block_size(model: ir.Model, block_size: int) -> None:
    """Every weight the passes will pack must split into whole blocks along its input dimension."""
    for name, k in _packed_inputs(model):
        if k % block_size:
            raise InputError("--block-size", f"{block_size} does not divide the input dimension {k} of {name} "
                                             f"(use a block size that divides {k})")


def _packed_inputs(model: ir.Model):
    """(weight name, input dimension K) of every weight the passes pack."""
    pair = find_tied_pair(model.graph)
    if pair is not None:
        table = pair[0].inputs[0]
        yield table.name, table.shape[1]
    for node in model.graph:
        weight = node.inputs[1] if node.op_type == "MatMul" and node.domain == "" and len(node.inputs) > 1 else None
        if weight is not None and weight.is_initializer() and weight.shape is not None and len(weight.shape) == 2:
            yield weight.name, weight.shape[0]


def _lm_head_bits(model: ir.Model, options: WeightOptions) -> dict[str, int]:
    """An untied lm_head's weight (`lm_head.weight_t`, linear_swap.py) at --lm-head's width."""
    name = LM_HEAD + WEIGHT_SUFFIX
    return {name: options.lm_head_bits} if name in model.graph.initializers else {}


def _record(options: WeightOptions, counts: dict, source: ExportDir, files: dict, staging: Path, text_source, tokens: int) -> dict:
    """The manifest's `quantization` entry."""
    matmuls, tied = counts["matmul_nbits"], counts["tied_embedding_nbits"]
    weights_before = matmuls["bytes_before"] + tied.get("bytes_before", 0)
    weights_after = matmuls["bytes_after"] + tied.get("bytes_after", 0)
    record = {
        "format": options.weights,
        "scheme": "weight-only com.microsoft MatMulNBits (onnxruntime's quantizer), blocks along the input dimension, "
                  f"{'symmetric' if options.symmetric else 'asymmetric (a uint zero point per block)'}; "
                  "activations, norms, attention and KV cache in the export's float dtype",
        "bits": options.bits,
        "block_size": options.block_size,
        "method": options.method,
        "algorithm": "GPTQ (onnxruntime's implementation) on the reference model's activations" if options.method == "calibrated"
                     else "round to nearest",
        "symmetric": options.symmetric,
        "accuracy_level": options.level,
        "lm_head_bits": options.lm_head_bits,
        "tied_embedding": {"shared": bool(tied.get("tied")), **{k: v for k, v in tied.items() if k != "tied"}},
        "matmuls": matmuls["matmuls"],
        "weight_bytes": {"before": weights_before, "after": weights_after},
        "file_bytes": {"before": sum((source.directory / name).stat().st_size for name in source.manifest.files),
                       "after": sum((staging / name).stat().st_size for name in files)},
    }
    if text_source is not None:
        record["calibration"] = {"source": text_source, "tokens": tokens}
    return record
