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

from .artifacts import EngineDir, ExportDir, TensorSpec
from .contract import GENERATION_SPEC_FILE, MODEL_FILE, dtype
from .errors import InputError
from .heads import Head
from .jsonfile import read_json
from .output_dir import staged_directory
from .serving.config import EngineConfig
from .serving.inputs import GENERATION_INPUTS, GENERATION_OUTPUTS
from .triton_engine import ENGINE_KNOB, check_engine_models, write_engine_models
from .triton_heads import FRONT as HEAD_FRONT
from .triton_heads import GRAPH as HEAD_GRAPH
from .triton_heads import HEAD_SPEC, check_head_repository, write_head_repository
from .triton_parts import (
    DECODER,
    GENERATE,
    MODELS_DIR,
    STREAM,
    check_chat,
    config_parameters,
    env_parameters,
    generation_config,
    generation_files,
    parameters_text,
    ship_chat_code,
    tensor_line,
)

RUNTIMES = ("python-ort", "onnxruntime", "tensorrt")
DECODER_IO = "io.json"  # the decoder's IO as the export declares it, for `triton --check`


def _dims(tensor: TensorSpec) -> str:
    return "[ " + ", ".join(map(str, tensor.fixed_dims)) + " ]"


def _decoder_io(source: ExportDir | EngineDir) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of the decoder: the engine's bindings, or the export's graph IO."""
    if isinstance(source, EngineDir):
        return source.build.tensors("input"), source.build.tensors("output")
    return source.manifest.inputs, source.manifest.outputs


def decoder_config(runtime: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], instances: int,
                   name: str = DECODER) -> str:
    """config.pbtxt of a model that runs an export's graph (the decoder, or a head's graph), IO as the export's."""
    backend = {"python-ort": 'backend: "python"', "onnxruntime": 'platform: "onnxruntime_onnx"',
               "tensorrt": 'platform: "tensorrt_plan"'}[runtime]
    kind = "KIND_GPU" if runtime == "tensorrt" else "KIND_CPU"
    lines = [f'name: "{name}"', backend, "max_batch_size: 0", "input ["]
    lines.append(",\n".join(tensor_line(t.name, dtype(t.dtype).triton, _dims(t)) for t in inputs))
    lines += ["]", "output ["]
    lines.append(",\n".join(tensor_line(t.name, dtype(t.dtype).triton, _dims(t)) for t in outputs))
    lines += ["]", f"instance_group [ {{ kind: {kind} count: {instances} }} ]"]
    if runtime == "python-ort":  # decoder_ort.py reads the graph's file name from here
        lines.append(f'parameters: {{ key: "model_file", value: {{ string_value: "{MODEL_FILE}" }} }}')
    elif runtime == "onnxruntime":
        lines.append(f'default_model_filename: "{MODEL_FILE}"')
    return "\n".join(lines) + "\n"


def write_repository(source: Path, repo: Path, runtime: str | None = None, force: bool = False,
                     instances: int = 2, python_env: Path | None = None, engine: EngineConfig | None = None) -> dict:
    """Write the repository; returns a summary. `python_env` sets the Python backend's EXECUTION_ENV_PATH.

    An export with an in-place cache (`--kv-cache static`) gets the resident engine
    (exporter/triton_engine.py; `engine` holds its knobs, max_context defaulting to the
    export's); any other export or engine the BLS layout (decoder + generation models).
    """
    source = Path(source)
    is_engine = EngineDir.exists(source)
    runtime = runtime or ("tensorrt" if is_engine else "python-ort")
    if runtime not in RUNTIMES:
        raise InputError("--runtime", f"{runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime == "tensorrt" and not is_engine:
        raise InputError(str(source), "the tensorrt runtime needs an engine directory (exaone4-export build)")
    if runtime != "tensorrt" and is_engine:
        raise InputError(str(source), f"the {runtime} runtime needs an export directory, not an engine")
    artifact = EngineDir.open(source) if is_engine else ExportDir.open(source)  # refuses changed files
    export = artifact.source_export() if is_engine else artifact
    if export.manifest.head is not Head.CAUSAL_LM:
        return write_head_repository(export, repo, runtime, force, instances, python_env)
    if export.static_context and runtime != "python-ort":
        raise InputError("--runtime", f"an in-place KV cache export (--kv-cache static) is served by the resident engine "
                         f"(python-ort runtime), not {runtime}")
    if engine is not None and not export.static_context:
        raise InputError(str(source), "--max-batch, --max-queue, --prefill-chunk, --prefill-stall and --max-context size the "
                         "resident engine, which needs an export with an in-place KV cache (--kv-cache static)")
    chat = generation_files(source)
    env = env_parameters(python_env)
    with staged_directory(Path(repo), marker="README.md", force=force) as staging:
        if export.static_context:
            summary = write_engine_models(staging, export, chat, engine, instances, env)
        else:
            summary = _write_bls_models(staging, artifact, export, runtime, chat, instances, env)
        (staging / "README.md").write_text(_readme(summary["runtime"], export, summary.get("memory")))
    return {**summary, "repo": str(repo)}


def _write_bls_models(staging: Path, artifact: ExportDir | EngineDir, export: ExportDir, runtime: str, chat: list[Path],
                      instances: int, env: dict[str, str]) -> dict:
    """The decoder model plus the two generation models that reach it over BLS."""
    inputs, outputs = _decoder_io(artifact)
    decoder_dir = staging / DECODER / "1"
    decoder_dir.mkdir(parents=True)
    if runtime == "tensorrt":
        shutil.copyfile(artifact.engine_path, decoder_dir / "model.plan")
    else:
        for path in artifact.graph_files:
            shutil.copyfile(path, decoder_dir / path.name)
        if runtime == "python-ort":
            shutil.copyfile(MODELS_DIR / "decoder_ort.py", decoder_dir / "model.py")
    io = {"inputs": [t.to_json() for t in inputs], "outputs": [t.to_json() for t in outputs]}
    (staging / DECODER / DECODER_IO).write_text(json.dumps(io, indent=2) + "\n")
    decoder_text = decoder_config(runtime, inputs, outputs, 1) + parameters_text(env if runtime == "python-ort" else {})
    (staging / DECODER / "config.pbtxt").write_text(decoder_text)
    layout = artifact.cache_layout()
    spec = {
        "decoder_model": DECODER,
        "num_layers": layout.num_layers,
        "num_kv_heads": layout.num_kv_heads,
        "head_dim": layout.head_dim,
        "kv_dtype": layout.dtype.name,
        "max_position_embeddings": export.config.max_position_embeddings,
    }
    for name, decoupled in ((GENERATE, False), (STREAM, True)):
        version = staging / name / "1"
        version.mkdir(parents=True)
        shutil.copyfile(MODELS_DIR / "generate.py", version / "model.py")
        (version / GENERATION_SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        for file in chat:
            shutil.copyfile(file, version / file.name)
        ship_chat_code(version)
        (staging / name / "config.pbtxt").write_text(generation_config(name, decoupled, instances, env))
    return {"runtime": runtime, "models": [DECODER, GENERATE, STREAM], "layout": "bls"}


def _models_table(memory: str | None) -> str:
    if memory:  # the resident engine
        return f"""| model | what |
|---|---|
| `{STREAM}` | the resident engine (decoupled): the export run by onnxruntime, a fixed pool of KV-cache slots and an \
in-flight batching scheduler; one response per piece of text (gRPC streaming, or HTTP `generate_stream`); its \
config.pbtxt parameters are the knobs (max_batch, max_context, max_queue, prefill_chunk, prefill_stall, threads). {memory} |
| `{GENERATE}` | the same requests answered with the whole text and tool calls: forwarded to `{STREAM}` over BLS, so \
plain and streaming requests batch together |
"""
    return f"""| model | what |
|---|---|
| `{DECODER}` | the decoder; IO as in the export contract (input_ids, attention_mask, position_ids, past_key_values.* -> \
logits, present.*) |
| `{GENERATE}` | text (or a JSON conversation) in, text and tool calls out: chat template, tokenization, greedy or \
sampled decoding with the KV cache (BLS to `{DECODER}`); runs exaone4-export's own chat code, shipped in `1/exaone4/` |
| `{STREAM}` | the same, decoupled: one response per generated token (gRPC streaming, or HTTP `generate_stream`) |
"""


def _readme(runtime: str, export: ExportDir, memory: str | None) -> str:
    return f"""# EXAONE 4 on Triton Inference Server

Written by exaone4-export from a {export.manifest.target} {export.manifest.dtype} export; runtime: {runtime}.

{_models_table(memory)}
Start the server:

    tritonserver --model-repository=$PWD

Ask it (inputs as in the TensorRT-LLM ensemble: text_input, max_tokens, optional temperature, top_p,
top_k, random_seed, enable_thinking; or messages, a JSON list of chat turns, instead of text_input;
tools, a JSON list of tool schemas, whose calls come back in tool_calls):

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
    if HEAD_GRAPH in configs or (repo / HEAD_FRONT / "1" / HEAD_SPEC).is_file():  # a head export's repository
        return problems + check_head_repository(repo, configs)
    engine = STREAM in configs and ENGINE_KNOB in config_parameters(configs[STREAM])
    for required in (GENERATE, STREAM) if engine else (DECODER, GENERATE, STREAM):
        if required not in configs:
            problems.append(f"{repo}: model {required!r} missing")
    if engine:
        problems += check_engine_models(configs[STREAM], repo / STREAM)
    elif DECODER in configs:
        problems += _check_decoder_io(configs[DECODER], repo / DECODER / DECODER_IO)
    for name in (GENERATE, STREAM):
        if name in configs:  # the engine's front (exaone4) reads no chat files: it forwards to exaone4_stream
            problems += _check_generation_model(configs[name], repo / name, with_chat=not (engine and name == GENERATE))
    return problems


def _check_generation_model(config, model_dir: Path, with_chat: bool) -> list[str]:
    """The config's IO and transaction policy, the shipped code and, `with_chat`, a chat path that will load."""
    from tritonclient.grpc import model_config_pb2

    problems = []
    where = model_dir / "config.pbtxt"
    have = {i.name: model_config_pb2.DataType.Name(i.data_type) for i in config.input}
    for tensor, name, _ in GENERATION_INPUTS:
        data_type = dtype(name).triton
        if have.get(tensor) != data_type:
            problems.append(f"{where}: input {tensor!r} should be {data_type}, is {have.get(tensor)}")
    if tuple(o.name for o in config.output) != GENERATION_OUTPUTS:
        problems.append(f"{where}: outputs should be {', '.join(GENERATION_OUTPUTS)}")
    if config.model_transaction_policy.decoupled != (model_dir.name == STREAM):
        problems.append(f"{where}: decoupled should be {model_dir.name == STREAM}")
    needed = ("model.py", GENERATION_SPEC_FILE, "exaone4/exporter/chat/__init__.py") if with_chat else ("model.py",)
    for version in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        for name in needed:
            if not (version / name).is_file():
                problems.append(f"{version / name}: missing")
        try:
            if with_chat:
                check_chat(version)
        except InputError as exc:
            problems.append(str(exc))
    return problems


def _check_decoder_io(config, manifest_path: Path) -> list[str]:
    from tritonclient.grpc import model_config_pb2

    if not manifest_path.is_file():
        return [f"{manifest_path}: missing (the decoder's IO record)"]
    expected = read_json(manifest_path)
    problems = []
    for kind, tensors in (("input", config.input), ("output", config.output)):
        have = {t.name: (model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors}
        specs = [TensorSpec.from_json(raw, f"{manifest_path}: {kind}s") for raw in expected.get(f"{kind}s", [])]
        for spec in specs:
            want = (dtype(spec.dtype).triton, spec.fixed_dims)
            if have.get(spec.name) != want:
                problems.append(f"{DECODER} {kind} {spec.name!r}: config has {have.get(spec.name)}, export has {want}")
        extra = set(have) - {spec.name for spec in specs}
        if extra:
            problems.append(f"{DECODER}: {kind}s {sorted(extra)} are not in the export")
    return problems
