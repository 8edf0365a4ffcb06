"""`exaone4-export triton`: a Triton Inference Server model repository, and its validation.

    REPO/
      exaone4_decoder/   the decoder, IO as in the export contract (dims -1 where dynamic):
                         python-ort (Python backend + onnxruntime, CPU), onnxruntime_onnx, or tensorrt_plan
      exaone4/           text generation (Python backend, BLS to exaone4_decoder), one response
      exaone4_stream/    the same, decoupled: one response per generated token
      README.md          how to start the server

Neither model batches dynamically: every request carries its own KV cache whose
length differs from the others', so Triton cannot stack them; concurrency comes
from instance groups instead. `check_repository` parses every config.pbtxt with
the model-config protobuf that ships in tritonclient and compares the decoder's
IO with the export manifest or engine bindings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .engine import read_build
from .errors import InputError
from .export import MANIFEST, MODEL_FILE, read_manifest
from .integrity import check_export_files
from .jsonfile import read_json
from .output_dir import staged_directory

DECODER, GENERATE, STREAM = "exaone4_decoder", "exaone4", "exaone4_stream"
RUNTIMES = ("python-ort", "onnxruntime", "tensorrt")
TRITON_DTYPES = {"float32": "TYPE_FP32", "float": "TYPE_FP32", "float16": "TYPE_FP16", "half": "TYPE_FP16",
                 "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "config.json")
MODELS_DIR = Path(__file__).resolve().parent / "triton_models"
GENERATION_INPUTS = [
    ("text_input", "TYPE_STRING", False),
    ("max_tokens", "TYPE_INT32", False),
    ("temperature", "TYPE_FP32", True),
    ("top_p", "TYPE_FP32", True),
    ("top_k", "TYPE_INT32", True),
    ("random_seed", "TYPE_UINT64", True),
    ("enable_thinking", "TYPE_BOOL", True),
]


def _dims(shape: list) -> str:
    return "[ " + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "-1" for d in shape) + " ]"


def _tensor(name: str, dtype: str, dims: str, optional: bool = False) -> str:
    extra = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {dtype} dims: {dims}{extra} }}'


def _decoder_io(source: Path) -> tuple[list[dict], list[dict], dict]:
    """(inputs, outputs, manifest) from an export's export.json or an engine's build.json + export."""
    if (source / "build.json").is_file():
        build = read_build(source)  # refuses an engine changed since it was built
        manifest = read_manifest(Path(build["export"]["directory"]))
        io = [{"name": b["name"], "dtype": b["dtype"], "shape": b["shape"], "kind": b["kind"]} for b in build["io"]]
        return [b for b in io if b["kind"] == "input"], [b for b in io if b["kind"] == "output"], manifest
    manifest = read_manifest(source)
    check_export_files(source, manifest)
    return manifest["io"]["inputs"], manifest["io"]["outputs"], manifest


def decoder_config(runtime: str, inputs: list[dict], outputs: list[dict], instances: int) -> str:
    backend = {"python-ort": 'backend: "python"', "onnxruntime": 'platform: "onnxruntime_onnx"',
               "tensorrt": 'platform: "tensorrt_plan"'}[runtime]
    kind = "KIND_GPU" if runtime == "tensorrt" else "KIND_CPU"
    lines = [f'name: "{DECODER}"', backend, "max_batch_size: 0", "input ["]
    lines.append(",\n".join(_tensor(i["name"], TRITON_DTYPES[i["dtype"]], _dims(i["shape"])) for i in inputs))
    lines += ["]", "output ["]
    lines.append(",\n".join(_tensor(o["name"], TRITON_DTYPES[o["dtype"]], _dims(o["shape"])) for o in outputs))
    lines += ["]", f"instance_group [ {{ kind: {kind} count: {instances} }} ]", ""]
    return "\n".join(lines)


def generation_config(name: str, decoupled: bool, instances: int) -> str:
    lines = [f'name: "{name}"', 'backend: "python"', "max_batch_size: 0"]
    if decoupled:
        lines.append("model_transaction_policy { decoupled: true }")
    lines.append("input [")
    lines.append(",\n".join(_tensor(n, t, "[ 1 ]", opt) for n, t, opt in GENERATION_INPUTS))
    lines += ["]", "output [", _tensor("text_output", "TYPE_STRING", "[ -1 ]"), "]",
              f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]", ""]
    return "\n".join(lines)


def write_repository(source: Path, repo: Path, runtime: str | None = None, force: bool = False,
                     instances: int = 2, python_env: Path | None = None) -> dict:
    """Write the repository; returns a summary. `python_env` sets the Python backend's EXECUTION_ENV_PATH."""
    source = Path(source)
    is_engine = (source / "build.json").is_file()
    runtime = runtime or ("tensorrt" if is_engine else "python-ort")
    if runtime not in RUNTIMES:
        raise InputError("--runtime", f"{runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime == "tensorrt" and not is_engine:
        raise InputError(str(source), "the tensorrt runtime needs an engine directory (exaone4-export build)")
    if runtime != "tensorrt" and is_engine:
        raise InputError(str(source), f"the {runtime} runtime needs an export directory, not an engine")
    inputs, outputs, manifest = _decoder_io(source)
    config = manifest["config"]
    if not (source / "tokenizer.json").is_file() or not (source / "tokenizer_config.json").is_file():
        raise InputError(str(source), "has no tokenizer.json / tokenizer_config.json to copy into the repository")
    env_parameter = (f'parameters: {{ key: "EXECUTION_ENV_PATH", value: {{ string_value: "{Path(python_env).resolve()}" }} }}\n'
                     if python_env else "")
    with staged_directory(Path(repo), marker="README.md", force=force) as staging:
        decoder_dir = staging / DECODER / "1"
        decoder_dir.mkdir(parents=True)
        if runtime == "tensorrt":
            shutil.copyfile(source / "model.engine", decoder_dir / "model.plan")
        else:
            for name in (MODEL_FILE, "model.onnx.data"):
                if (source / name).is_file():
                    shutil.copyfile(source / name, decoder_dir / name)
            if runtime == "python-ort":
                shutil.copyfile(MODELS_DIR / "decoder_ort.py", decoder_dir / "model.py")
        (staging / DECODER / MANIFEST).write_text(json.dumps({"inputs": inputs, "outputs": outputs}, indent=2) + "\n")
        decoder_text = decoder_config(runtime, inputs, outputs, 1) + (env_parameter if runtime == "python-ort" else "")
        (staging / DECODER / "config.pbtxt").write_text(decoder_text)
        kv = next(i for i in inputs if i["name"] == "past_key_values.0.key")
        spec = {
            "decoder_model": DECODER,
            "num_layers": config["num_layers"],
            "num_kv_heads": config["num_kv_heads"],
            "head_dim": config["head_dim"],
            "kv_dtype": "float16" if TRITON_DTYPES[kv["dtype"]] == "TYPE_FP16" else "float32",
            "max_position_embeddings": config["max_position_embeddings"],
            "eos_token_ids": _eos_ids(source),
        }
        for name, decoupled in ((GENERATE, False), (STREAM, True)):
            version = staging / name / "1"
            version.mkdir(parents=True)
            shutil.copyfile(MODELS_DIR / "generate.py", version / "model.py")
            (version / "generation.json").write_text(json.dumps(spec, indent=2) + "\n")
            for file in TOKENIZER_FILES:
                if (source / file).is_file():
                    shutil.copyfile(source / file, version / file)
            (staging / name / "config.pbtxt").write_text(generation_config(name, decoupled, instances) + env_parameter)
        (staging / "README.md").write_text(_readme(runtime, manifest))
    return {"runtime": runtime, "models": [DECODER, GENERATE, STREAM], "repo": str(repo)}


def _eos_ids(source: Path) -> list[int]:
    for name in ("generation_config.json", "config.json"):
        path = source / name
        if path.is_file():
            value = read_json(path).get("eos_token_id")
            if value is not None:
                return value if isinstance(value, list) else [value]
    return []


def _readme(runtime: str, manifest: dict) -> str:
    return f"""# EXAONE 4 on Triton Inference Server

Written by exaone4-export from a {manifest['target']} {manifest['dtype']} export; decoder runtime: {runtime}.

| model | what |
|---|---|
| `{DECODER}` | the decoder; IO as in the export contract (input_ids, attention_mask, position_ids, past_key_values.* -> logits, present.*) |
| `{GENERATE}` | text in, text out: chat template, tokenization, greedy or sampled decoding with the KV cache (BLS to `{DECODER}`) |
| `{STREAM}` | the same, decoupled: one response per generated token (gRPC streaming, or HTTP `generate_stream`) |

Start the server:

    tritonserver --model-repository=$PWD

Ask it (inputs as in the TensorRT-LLM ensemble: text_input, max_tokens, optional temperature, top_p,
top_k, random_seed, enable_thinking):

    curl -s localhost:8000/v2/models/{GENERATE}/generate -d '{{"text_input": "Hello", "max_tokens": 32}}'

The Python-backend models need numpy, tokenizers, jinja2 (and onnxruntime for a python-ort decoder)
in the backend's Python environment; set `EXECUTION_ENV_PATH` in their config.pbtxt to a virtual
environment that has them. A tensorrt_plan decoder needs the engine built for this GPU
(`exaone4-export build --compute-capability SM..`).
"""


def check_repository(repo: Path) -> list[str]:
    """Problems found in a repository (empty when it is valid)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = Path(repo)
    if not repo.is_dir():
        raise InputError(str(repo), "model repository not found")
    problems = []
    configs = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        config = model_config_pb2.ModelConfig()
        try:
            text_format.Parse(path.read_text(), config)
        except text_format.ParseError as exc:
            problems.append(f"{path}: does not parse as a Triton ModelConfig ({exc})")
            continue
        if config.name != path.parent.name:
            problems.append(f"{path}: name {config.name!r} differs from its folder {path.parent.name!r}")
        if not any(p.is_dir() and p.name.isdigit() for p in path.parent.iterdir()):
            problems.append(f"{path.parent}: no version folder")
        configs[config.name] = config
    for required in (DECODER, GENERATE, STREAM):
        if required not in configs:
            problems.append(f"{repo}: model {required!r} missing")
    if DECODER in configs:
        problems += _check_decoder_io(configs[DECODER], repo / DECODER / MANIFEST)
    for name in (GENERATE, STREAM):
        if name in configs:
            have = {i.name: model_config_pb2.DataType.Name(i.data_type) for i in configs[name].input}
            for tensor, dtype, _ in GENERATION_INPUTS:
                if have.get(tensor) != dtype:
                    problems.append(f"{repo / name / 'config.pbtxt'}: input {tensor!r} should be {dtype}, is {have.get(tensor)}")
            if [o.name for o in configs[name].output] != ["text_output"]:
                problems.append(f"{repo / name / 'config.pbtxt'}: output should be text_output")
            decoupled = configs[name].model_transaction_policy.decoupled
            if decoupled != (name == STREAM):
                problems.append(f"{repo / name / 'config.pbtxt'}: decoupled should be {name == STREAM}")
    return problems


def _check_decoder_io(config, manifest_path: Path) -> list[str]:
    from tritonclient.grpc import model_config_pb2

    if not manifest_path.is_file():
        return [f"{manifest_path}: missing (the decoder's IO record)"]
    expected = read_json(manifest_path)
    problems = []
    for kind, tensors in (("input", config.input), ("output", config.output)):
        have = {t.name: (model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors}
        for io in expected[f"{kind}s"]:
            want = (TRITON_DTYPES[io["dtype"]], [d if isinstance(d, int) and d >= 0 else -1 for d in io["shape"]])
            if have.get(io["name"]) != want:
                problems.append(f"{DECODER} {kind} {io['name']!r}: config has {have.get(io['name'])}, export has {want}")
        extra = set(have) - {io["name"] for io in expected[f"{kind}s"]}
        if extra:
            problems.append(f"{DECODER}: {kind}s {sorted(extra)} are not in the export")
    return problems
