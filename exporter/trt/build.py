"""`exaone4-export build`: a serialized TensorRT engine from an fp16 or fp8 export.

One code path over the TensorRT Python API, whichever provider is importable:
the full `tensorrt` package where a GPU is present, otherwise TensorRT for RTX
(`tensorrt_rtx`), which builds ahead of time on a machine without a GPU for the
compute capabilities named here. The network is strongly typed, so the engine
keeps exactly the export's precisions: fp16 weights and activations with norms,
softmax statistics and logits in fp32 (fp16), or the export's FP8 Q/DQ (fp8).

Two optimization profiles, prefill and decode, map the IO contract's dynamic dims
(profiles.py). `build.json` beside `model.engine` records the provider, precision, profiles,
targets, IO bindings, layer count and types, build time and sizes.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx_ir as ir

from ...graphs.pipeline import run_pipeline
from ..artifacts import BuildRecord, ExportDir, TensorSpec
from ..contract import BUILD_MANIFEST, ENGINE_FILE
from ..errors import InputError
from ..export import copy_side_files, save_model
from ..heads import require_causal_lm
from ..output_dir import staged_directory
from .plugin import register
from .profiles import profiles
from .provider import check_plugin_loading, dtype_name, load_tensorrt

FP8_CAPABLE = ("SM89", "SM120", "SM121")  # Ada and Blackwell; Hopper (SM90) needs the full TensorRT
DEFAULT_TARGETS = {"fp16": ("SM80", "SM86", "SM89"), "fp8": ("SM89",)}


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    max_batch: int = 4
    max_prefill: int = 0  # 0: min(2048, max positions)
    max_context: int = 0  # 0: min(8192, max positions)
    compute_capabilities: tuple[str, ...] = ()  # empty: DEFAULT_TARGETS[precision]
    force: bool = False
    attention: str = "native"  # or "plugin": our IPluginV3 (exporter/trt/plugin.py), from a canonical export


def _check(options: BuildOptions, export: ExportDir) -> tuple[int, int, tuple[str, ...]]:
    manifest, export_dir = export.manifest, export.directory
    quantized = manifest.quantization_format
    if options.precision not in ("fp16", "fp8"):
        raise InputError("--precision", f"{options.precision!r} is not fp16 or fp8")
    if options.precision == "fp16" and (manifest.dtype != "float16" or quantized):
        raise InputError(str(export_dir), "an fp16 engine needs a float16 export (exaone4-export export --dtype float16); "
                         "float32 attention has no fused TensorRT kernel")
    if options.precision == "fp8" and quantized != "fp8":
        raise InputError(str(export_dir), "an fp8 engine needs an fp8 export (exaone4-export quantize)")
    if manifest.target not in ("canonical", "trt"):
        raise InputError(str(export_dir), f"is a {manifest.target!r} export; build from a canonical or trt export")
    if options.attention not in ("native", "plugin"):
        raise InputError("--attention", f"{options.attention!r} is not native or plugin")
    if options.attention == "plugin" and manifest.target != "canonical":
        raise InputError(str(export_dir), "the attention plugin replaces exaone4::Attention nodes: build it from a canonical export")
    positions = export.config.max_position_embeddings
    max_prefill = options.max_prefill or min(2048, positions)
    max_context = options.max_context or min(8192, positions)
    for name, value in (("--max-prefill", max_prefill), ("--max-context", max_context)):
        if value > positions:
            raise InputError(name, f"{value} exceeds the model's max_position_embeddings {positions}")
    if max_prefill > max_context:
        raise InputError("--max-prefill", f"{max_prefill} exceeds --max-context {max_context}")
    if options.max_batch < 1:
        raise InputError("--max-batch", "must be at least 1")
    targets = options.compute_capabilities or DEFAULT_TARGETS[options.precision]
    if options.precision == "fp8":
        unsupported = [t for t in targets if t not in FP8_CAPABLE]
        if unsupported:
            raise InputError("--compute-capability",
                             f"{', '.join(unsupported)} has no FP8 tensor cores; fp8 needs one of {', '.join(FP8_CAPABLE)}")
    return max_prefill, max_context, tuple(targets)


def build_engine(
    export_dir: Path, out: Path, options: BuildOptions = BuildOptions(), progress: Callable[[str], None] = lambda s: None
) -> BuildRecord:
    """Build and return the build record written to `out/build.json`."""
    export = ExportDir.open(export_dir)
    require_causal_lm(export.config.head, str(export.directory), "build (prefill and decode profiles)")
    max_prefill, max_context, targets = _check(options, export)
    trt, provider = load_tensorrt()
    with staged_directory(Path(out), marker=BUILD_MANIFEST, force=options.force) as staging:
        onnx_path = export.model_path
        if options.attention == "plugin":
            check_plugin_loading(provider)
            register(trt)
        if export.manifest.target == "canonical":
            progress("lowering for TensorRT")
            model = ir.load(onnx_path)
            run_pipeline(model, "trt-plugin" if options.attention == "plugin" else "trt")
            save_model(model, staging)
            onnx_path = staging / export.model_path.name
        progress("parsing ONNX")
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
            raise InputError(str(onnx_path), f"TensorRT cannot parse it: {errors}")
        config = builder.create_builder_config()
        ahead_of_time = hasattr(config, "set_compute_capability")  # TensorRT for RTX: targets named here
        if ahead_of_time:
            config.num_compute_capabilities = len(targets)
            for index, target in enumerate(targets):
                config.set_compute_capability(getattr(trt.ComputeCapability, target), index)
        inputs = [(network.get_input(i).name, tuple(network.get_input(i).shape)) for i in range(network.num_inputs)]
        profile_specs = profiles(inputs, options.max_batch, max_prefill, max_context, export.manifest.window_past_caps())
        for spec in profile_specs:
            profile = builder.create_optimization_profile()
            for name, (low, opt, high) in spec["shapes"].items():
                profile.set_shape(name, low, opt, high)
            config.add_optimization_profile(profile)
        progress(f"building {options.precision} engine for {', '.join(targets)}")
        started = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - started
        if serialized is None:
            raise InputError(str(export_dir), "TensorRT could not build an engine from this export (see its log above)")
        engine_bytes = bytes(serialized)
        (staging / ENGINE_FILE).write_bytes(engine_bytes)
        layers = [{"name": network.get_layer(i).name, "type": str(network.get_layer(i).type).split(".")[-1]}
                  for i in range(network.num_layers)]
        manifest = export.manifest
        build = BuildRecord(
            provider=provider,
            provider_version=trt.__version__,
            precision=options.precision,
            compute_capabilities=list(targets) if ahead_of_time else "the build machine's GPU",
            profiles=profile_specs,
            options=asdict(options),
            io=_bindings(network),
            num_layers=network.num_layers,
            layer_types=dict(Counter(layer["type"] for layer in layers)),
            layers=layers,
            decoder_layers=export.config.num_layers,
            build_seconds=round(seconds, 2),
            engine_bytes=len(engine_bytes),
            engine_sha256=hashlib.sha256(engine_bytes).hexdigest(),
            export={"directory": str(export.directory.resolve()), "target": manifest.target, "dtype": manifest.dtype,
                    "kv_cache": manifest.kv_cache, "logits": manifest.logits,
                    "quantization": manifest.quantization_format, "files": manifest.files},
        )
        build.write(staging)
        copy_side_files(export.directory, staging)
    return build


def _bindings(network) -> tuple[tuple[str, TensorSpec], ...]:
    """(kind, tensor) for every network input and output, dtypes in the contract's spelling."""
    rows = []
    for kind, count, get in (("input", network.num_inputs, network.get_input), ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor = get(i)
            rows.append((kind, TensorSpec(tensor.name, dtype_name(tensor.dtype), tuple(tensor.shape))))
    return tuple(rows)
