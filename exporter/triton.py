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
from .chat import SHIPPED_MODULES, ChatTokenizer
from .contract import MODEL_FILE, SIDE_FILES, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, dtype
from .errors import InputError
from .heads import Head
from .jsonfile import read_json
from .output_dir import staged_directory
from .triton_heads import FRONT as HEAD_FRONT
from .triton_heads import GRAPH as HEAD_GRAPH
from .triton_heads import HEAD_SPEC, check_head_repository, write_head_repository

DECODER, GENERATE, STREAM = "exaone4_decoder", "exaone4", "exaone4_stream"
RUNTIMES = ("python-ort", "onnxruntime", "tensorrt")
DECODER_IO = "io.json"  # the decoder's IO as the export declares it, for `triton --check`
SPEC_FILE = "generation.json"  # what the generation models need to know of the decoder
PACKAGE_DIR = Path(__file__).resolve().parent  # exaone4/exporter, whose SHIPPED_MODULES are copied
MODELS_DIR = PACKAGE_DIR / "triton_models"
# (name, dtype, optional) of the generation models' inputs, as the TensorRT-LLM ensemble names them
GENERATION_INPUTS = [
    ("text_input", "string", True),
    ("messages", "string", True),  # a JSON list of chat messages, instead of text_input
    ("max_tokens", "int32", False),
    ("temperature", "float32", True),
    ("top_p", "float32", True),
    ("top_k", "int32", True),
    ("random_seed", "uint64", True),
    ("enable_thinking", "bool", True),
    ("tools", "string", True),  # a JSON list of tool schemas
]
GENERATION_OUTPUTS = ["text_output", "tool_calls"]


def _dims(tensor: TensorSpec) -> str:
    return "[ " + ", ".join(map(str, tensor.fixed_dims)) + " ]"


def _tensor(name: str, data_type: str, dims: str, optional: bool = False) -> str:
    extra = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {data_type} dims: {dims}{extra} }}'


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
    lines.append(",\n".join(_tensor(t.name, dtype(t.dtype).triton, _dims(t)) for t in inputs))
    lines += ["]", "output ["]
    lines.append(",\n".join(_tensor(t.name, dtype(t.dtype).triton, _dims(t)) for t in outputs))
    lines += ["]", f"instance_group [ {{ kind: {kind} count: {instances} }} ]"]
    if runtime == "python-ort":  # decoder_ort.py reads the graph's file name from here
        lines.append(f'parameters: {{ key: "model_file", value: {{ string_value: "{MODEL_FILE}" }} }}')
    elif runtime == "onnxruntime":
        lines.append(f'default_model_filename: "{MODEL_FILE}"')
    return "\n".join(lines) + "\n"


def generation_config(name: str, decoupled: bool, instances: int) -> str:
    lines = [f'name: "{name}"', 'backend: "python"', "max_batch_size: 0"]
    if decoupled:
        lines.append("model_transaction_policy { decoupled: true }")
    lines.append("input [")
    lines.append(",\n".join(_tensor(n, dtype(t).triton, "[ 1 ]", opt) for n, t, opt in GENERATION_INPUTS))
    lines += ["]", "output [", ",\n".join(_tensor(name, dtype("string").triton, "[ -1 ]") for name in GENERATION_OUTPUTS), "]",
              f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]", ""]
    return "\n".join(lines)


def write_repository(source: Path, repo: Path, runtime: str | None = None, force: bool = False,
                     instances: int = 2, python_env: Path | None = None) -> dict:
    """Write the repository; returns a summary. `python_env` sets the Python backend's EXECUTION_ENV_PATH."""
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
    if export.static_context:
        raise InputError(str(source), "has an in-place KV cache (--kv-cache static), which this repository's BLS "
                         "generation models cannot hold: they carry the cache through each decoder call; use a full-cache export")
    inputs, outputs = _decoder_io(artifact)
    chat = _generation_files(source)
    env_parameter = (f'parameters: {{ key: "EXECUTION_ENV_PATH", value: {{ string_value: "{Path(python_env).resolve()}" }} }}\n'
                     if python_env else "")
    with staged_directory(Path(repo), marker="README.md", force=force) as staging:
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
        decoder_text = decoder_config(runtime, inputs, outputs, 1) + (env_parameter if runtime == "python-ort" else "")
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
            (version / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
            for file in chat:
                shutil.copyfile(file, version / file.name)
            ship_chat_code(version)
            (staging / name / "config.pbtxt").write_text(generation_config(name, decoupled, instances) + env_parameter)
        (staging / "README.md").write_text(_readme(runtime, export))
    return {"runtime": runtime, "models": [DECODER, GENERATE, STREAM], "repo": str(repo)}


def _generation_files(source: Path) -> list[Path]:
    """The side files the generation models read, after checking they make a working chat path.

    Opening the chat tokenizer here refuses what would otherwise fail only when the
    server loads the model: no template, special tokens missing from the vocabulary,
    a malformed eos_token_id, no stop token.
    """
    for required in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE):
        if not (source / required).is_file():
            raise InputError(str(source), f"has no {required} to copy into the repository")
    _check_chat(source)
    return [source / name for name in SIDE_FILES if (source / name).is_file()]


def _check_chat(directory: Path) -> ChatTokenizer:
    chat = ChatTokenizer.open(directory)
    if chat.template is None:
        raise InputError(str(directory), "has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json)")
    return chat


def ship_chat_code(version: Path, modules: tuple[str, ...] = SHIPPED_MODULES) -> None:
    """Copy exaone4.exporter's `modules` (the chat path by default) beside a Python-backend model's model.py."""
    package = version / "exaone4" / "exporter"
    package.mkdir(parents=True)
    (version / "exaone4" / "__init__.py").write_text('"""exaone4-export modules shipped for the Triton Python-backend models."""\n')
    for name in modules:
        path = PACKAGE_DIR / name
        if path.is_dir():
            shutil.copytree(path, package / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(path, package / name)


def _readme(runtime: str, export: ExportDir) -> str:
    return f"""# EXAONE 4 on Triton Inference Server

Written by exaone4-export from a {export.manifest.target} {export.manifest.dtype} export; decoder runtime: {runtime}.

| model | what |
|---|---|
| `{DECODER}` | the decoder; IO as in the export contract (input_ids, attention_mask, position_ids, past_key_values.* -> \
logits, present.*) |
| `{GENERATE}` | text (or a JSON conversation) in, text and tool calls out: chat template, tokenization, greedy or \
sampled decoding with the KV cache (BLS to `{DECODER}`); runs exaone4-export's own chat code, shipped in `1/exaone4/` |
| `{STREAM}` | the same, decoupled: one response per generated token (gRPC streaming, or HTTP `generate_stream`) |

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
    for required in (DECODER, GENERATE, STREAM):
        if required not in configs:
            problems.append(f"{repo}: model {required!r} missing")
    if DECODER in configs:
        problems += _check_decoder_io(configs[DECODER], repo / DECODER / DECODER_IO)
    for name in (GENERATE, STREAM):
        if name in configs:
            problems += _check_generation_model(configs[name], repo / name)
    return problems


def _check_generation_model(config, model_dir: Path) -> list[str]:
    """The config's IO and transaction policy, and a chat path that will load: template, tokenizer, stop tokens."""
    from tritonclient.grpc import model_config_pb2

    problems = []
    where = model_dir / "config.pbtxt"
    have = {i.name: model_config_pb2.DataType.Name(i.data_type) for i in config.input}
    for tensor, name, _ in GENERATION_INPUTS:
        data_type = dtype(name).triton
        if have.get(tensor) != data_type:
            problems.append(f"{where}: input {tensor!r} should be {data_type}, is {have.get(tensor)}")
    if [o.name for o in config.output] != GENERATION_OUTPUTS:
        problems.append(f"{where}: outputs should be {', '.join(GENERATION_OUTPUTS)}")
    if config.model_transaction_policy.decoupled != (model_dir.name == STREAM):
        problems.append(f"{where}: decoupled should be {model_dir.name == STREAM}")
    for version in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
        for needed in ("model.py", SPEC_FILE, "exaone4/exporter/chat/__init__.py"):
            if not (version / needed).is_file():
                problems.append(f"{version / needed}: missing")
        try:
            _check_chat(version)
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
