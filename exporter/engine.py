"""`exaone4-export build`: a serialized TensorRT engine from an fp16 or fp8 export.

One code path over the TensorRT Python API, whichever provider is importable:
the full `tensorrt` package where a GPU is present, otherwise TensorRT for RTX
(`tensorrt_rtx`), which builds ahead of time on a machine without a GPU for the
compute capabilities named here. The network is strongly typed, so the engine
keeps exactly the export's precisions: fp16 weights and activations with norms,
softmax statistics and logits in fp32 (fp16), or the export's FP8 Q/DQ (fp8).

Two optimization profiles map the IO contract's dynamic dims:
    0 prefill: sequence 1..max_prefill, past 0, batch 1..max_batch
    1 decode:  sequence 1, past 0..max_context-1, batch 1..max_batch

`build.json` beside `model.engine` records the provider, precision, profiles,
targets, IO bindings, layer count and types, build time and sizes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx_ir as ir

from ..graphs.pipeline import run_pipeline
from .checkpoint import sha256_file
from .errors import InputError
from .export import MODEL_FILE, copy_side_files, read_manifest, save_model
from .integrity import check_export_files
from .jsonfile import read_json
from .output_dir import staged_directory

ENGINE_FILE = "model.engine"
BUILD_MANIFEST = "build.json"
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
    attention: str = "native"  # or "plugin": our IPluginV3 (plugins/attention.py), from a canonical export


def load_tensorrt():
    """(module, provider name): full TensorRT when importable, else TensorRT for RTX."""
    try:
        import tensorrt as trt

        return trt, "tensorrt"
    except ImportError:
        pass
    try:
        import tensorrt_rtx as trt

        return trt, "tensorrt-rtx"
    except ImportError:
        raise InputError("tensorrt", "neither tensorrt nor tensorrt-rtx is installed (pip install tensorrt-rtx)") from None


def _check(options: BuildOptions, manifest: dict, export_dir: Path) -> tuple[int, int, tuple[str, ...]]:
    config = manifest["config"]
    quantized = (manifest.get("quantization") or {}).get("format")
    if options.precision not in ("fp16", "fp8"):
        raise InputError("--precision", f"{options.precision!r} is not fp16 or fp8")
    if options.precision == "fp16" and (manifest["dtype"] != "float16" or quantized):
        raise InputError(str(export_dir), "an fp16 engine needs a float16 export (exaone4-export export --dtype float16); "
                         "float32 attention has no fused TensorRT kernel")
    if options.precision == "fp8" and quantized != "fp8":
        raise InputError(str(export_dir), "an fp8 engine needs an fp8 export (exaone4-export quantize)")
    if manifest["target"] not in ("canonical", "trt"):
        raise InputError(str(export_dir), f"is a {manifest['target']!r} export; build from a canonical or trt export")
    if options.attention not in ("native", "plugin"):
        raise InputError("--attention", f"{options.attention!r} is not native or plugin")
    if options.attention == "plugin" and manifest["target"] != "canonical":
        raise InputError(str(export_dir), "the attention plugin replaces exaone4::Attention nodes: build it from a canonical export")
    positions = config["max_position_embeddings"]
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
            raise InputError("--compute-capability", f"{', '.join(unsupported)} has no FP8 tensor cores; fp8 needs one of {', '.join(FP8_CAPABLE)}")
    return max_prefill, max_context, tuple(targets)


def profiles(
    inputs: list[tuple[str, tuple[int, ...]]],
    max_batch: int,
    max_prefill: int,
    max_context: int,
    past_caps: dict[str, int] | None = None,
) -> list[dict]:
    """min/opt/max shapes per input for the prefill and decode profiles.

    `past_caps` bounds the past length of named inputs: a window KV cache's
    sliding layers never hold more than W - 1 slots.
    """
    past_caps = past_caps or {}

    def shapes(seq: tuple[int, int, int], past: tuple[int, int, int]) -> dict:
        batch = (1, 1, max_batch)
        result = {}
        for name, shape in inputs:
            if name in ("input_ids", "position_ids"):
                result[name] = [[b, s] for b, s in zip(batch, seq)]
            elif name == "attention_mask":
                result[name] = [[b, s + p] for b, s, p in zip(batch, seq, past)]
            else:  # past_key_values.{i}.key/value [B, KV, P, D]
                cap = past_caps.get(name, max_context)
                result[name] = [[b, shape[1], min(p, cap), shape[3]] for b, p in zip(batch, past)]
        return result

    return [
        {"name": "prefill", "shapes": shapes((1, min(128, max_prefill), max_prefill), (0, 0, 0))},
        {"name": "decode", "shapes": shapes((1, 1, 1), (0, min(1024, max_context - 1), max_context - 1))},
    ]


def window_past_caps(manifest: dict) -> dict[str, int]:
    """{past input name: W - 1} for the sliding layers of a window-cache export; {} for a full cache."""
    if manifest.get("kv_cache", "full") != "window":
        return {}
    return {
        f"past_key_values.{layer['index']}.{kind}": layer["window"] - 1
        for layer in manifest["layers"]
        if layer["window"]
        for kind in ("key", "value")
    }


def register_attention_plugin(trt):
    """Register the EXAONE attention IPluginV3 creator (once per process); returns it."""
    from ..plugins.attention import register

    return register(trt)


def check_plugin_loading(provider: str) -> None:
    """Refuse a plugin build that would abort the process: TensorRT for RTX 1.7's ONNX parser dlopens
    `libtensorrt_rtx.so` (no version suffix) when it imports a plugin node, the wheel ships only
    `libtensorrt_rtx.so.1`, and the failure terminates the process from a noexcept region."""
    if provider != "tensorrt-rtx":
        return
    import ctypes

    import tensorrt_rtx_libs

    libs = Path(tensorrt_rtx_libs.__file__).parent
    if (libs / "libtensorrt_rtx.so").exists():
        return
    try:
        ctypes.CDLL("libtensorrt_rtx.so")
    except OSError:
        raise InputError("--attention plugin", f"TensorRT for RTX's parser needs {libs}/libtensorrt_rtx.so to load plugins; "
                         f"create it with: ln -s libtensorrt_rtx.so.1 {libs}/libtensorrt_rtx.so (make venv does)") from None


def build_engine(
    export_dir: Path, out: Path, options: BuildOptions = BuildOptions(), progress: Callable[[str], None] = lambda s: None
) -> dict:
    """Build and return the build manifest written to `out/build.json`."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    max_prefill, max_context, targets = _check(options, manifest, export_dir)
    check_export_files(export_dir, manifest)
    trt, provider = load_tensorrt()
    with staged_directory(Path(out), marker=BUILD_MANIFEST, force=options.force) as staging:
        onnx_path = export_dir / MODEL_FILE
        if options.attention == "plugin":
            check_plugin_loading(provider)
            register_attention_plugin(trt)
        if manifest["target"] == "canonical":
            progress("lowering for TensorRT")
            model = ir.load(onnx_path)
            run_pipeline(model, "trt-plugin" if options.attention == "plugin" else "trt")
            save_model(model, staging)
            onnx_path = staging / MODEL_FILE
        progress("parsing ONNX")
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
            raise InputError(str(onnx_path), f"TensorRT cannot parse it: {errors}")
        config = builder.create_builder_config()
        if hasattr(config, "set_compute_capability"):  # TensorRT for RTX: ahead-of-time targets
            config.num_compute_capabilities = len(targets)
            for index, target in enumerate(targets):
                config.set_compute_capability(getattr(trt.ComputeCapability, target), index)
        inputs = [(network.get_input(i).name, tuple(network.get_input(i).shape)) for i in range(network.num_inputs)]
        profile_specs = profiles(inputs, options.max_batch, max_prefill, max_context, window_past_caps(manifest))
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
        build = {
            "format": "exaone4-engine/1",
            "provider": provider,
            "provider_version": trt.__version__,
            "precision": options.precision,
            "compute_capabilities": list(targets) if hasattr(config, "set_compute_capability") else "the build machine's GPU",
            "profiles": profile_specs,
            "options": asdict(options),
            "io": _bindings(network, trt),
            "num_layers": network.num_layers,
            "layer_types": dict(Counter(str(network.get_layer(i).type).split(".")[-1] for i in range(network.num_layers))),
            "layers": [{"name": network.get_layer(i).name, "type": str(network.get_layer(i).type).split(".")[-1]}
                       for i in range(network.num_layers)],
            "decoder_layers": manifest["config"]["num_layers"],
            "build_seconds": round(seconds, 2),
            "engine_bytes": len(engine_bytes),
            "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
            "export": {"directory": str(export_dir.resolve()), "target": manifest["target"], "dtype": manifest["dtype"],
                       "kv_cache": manifest.get("kv_cache", "full"), "logits": manifest.get("logits", "all"),
                       "quantization": (manifest.get("quantization") or {}).get("format"), "files": manifest.get("files", {})},
        }
        (staging / BUILD_MANIFEST).write_text(json.dumps(build, indent=2) + "\n")
        copy_side_files(export_dir, staging)
    return build


def _bindings(network, trt) -> list[dict]:
    rows = []
    for kind, count, get in (("input", network.num_inputs, network.get_input), ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor = get(i)
            rows.append({"name": tensor.name, "kind": kind, "dtype": str(tensor.dtype).split(".")[-1].lower(),
                         "shape": list(tensor.shape)})
    return rows


def read_build(engine_dir: Path) -> dict:
    path = Path(engine_dir) / BUILD_MANIFEST
    if not path.is_file():
        raise InputError(str(engine_dir), f"not an engine directory of this tool (no {BUILD_MANIFEST})")
    build = read_json(path)
    if not isinstance(build, dict):
        raise InputError(str(path), "not a build record of this tool (not a JSON object)")
    engine = Path(engine_dir) / ENGINE_FILE
    if not engine.is_file():
        raise InputError(str(engine), "engine file missing")
    digest = sha256_file(engine)  # in blocks: an engine can be tens of GB
    if digest != build.get("engine_sha256"):
        raise InputError(str(engine), "changed since it was built (sha256 does not match build.json)")
    return build
