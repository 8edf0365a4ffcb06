"""`exaone4-export triton` for a head export: a repository serving text to labels, entities or answers.

    REPO/
      exaone4_model/   the export's graph, IO as the export (input_ids, attention_mask -> its outputs);
                       python-ort (Python backend + onnxruntime, CPU) or onnxruntime_onnx
      exaone4/         Python backend, dynamic batching: tokenize the batch of requests, one BLS call
                       to exaone4_model, post-process per request (exporter/head_serving.py, shipped)
      README.md

Unlike the generation models, these are single forward passes: Triton's dynamic
batcher stacks concurrent requests into one `execute`, and the model pads them into
one batch. The base model's front (feature extraction) answers the token states and
a pooled vector, pooled as its config.pbtxt parameters say (POOLING_PARAMETERS).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .artifacts import ExportDir
from .contract import SIDE_FILES, TOKENIZER_FILE
from .errors import InputError
from .head_serving import POOLINGS

GRAPH, FRONT = "exaone4_model", "exaone4"
HEAD_SPEC = "head.json"  # what the front model knows: task, labels, pad id, the graph model's name and outputs
HEAD_MODULES = ("__init__.py", "errors.py", "contract.py", "head_serving.py")  # exporter/ modules the front model imports
MAX_BATCH = 16
POOLING_PARAMETERS = {"pooling": POOLINGS[0], "normalize": "false"}  # feature extraction's knobs, as written by default
# (name, dtype, dims without the batch dimension; {hidden}: the model's hidden size) per task, inputs then outputs
TASK_IO = {
    "feature-extraction": ([("text_input", "string", "[ 1 ]")],
                           [("last_hidden_state", "float32", "[ -1, {hidden} ]"), ("embedding", "float32", "[ {hidden} ]")]),
    "text-classification": ([("text_input", "string", "[ 1 ]")], [("label", "string", "[ 1 ]"), ("scores", "float32", "[ -1 ]")]),
    "token-classification": ([("text_input", "string", "[ 1 ]")], [("entities", "string", "[ 1 ]")]),
    "question-answering": ([("question", "string", "[ 1 ]"), ("context", "string", "[ 1 ]")],
                           [("answer", "string", "[ 1 ]"), ("score", "float32", "[ 1 ]")]),
}


def front_config(task: str, instances: int, parameters: dict[str, str], hidden: int) -> str:
    """config.pbtxt of the front model: the task's tensors, dynamic batching on."""
    from .contract import dtype
    from .triton_parts import parameters_text, tensor_line

    def tensors(io):
        return ",\n".join(tensor_line(name, dtype(kind).triton, dims.format(hidden=hidden)) for name, kind, dims in io)

    inputs, outputs = TASK_IO[task]
    knobs = POOLING_PARAMETERS if task == "feature-extraction" else {}
    lines = [f'name: "{FRONT}"', 'backend: "python"', f"max_batch_size: {MAX_BATCH}", "input [", tensors(inputs), "]",
             "output [", tensors(outputs), "]", "dynamic_batching { max_queue_delay_microseconds: 2000 }",
             f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]", ""]
    return "\n".join(lines) + parameters_text({**knobs, **parameters})


def write_head_repository(export: ExportDir, repo: Path, runtime: str, force: bool, instances: int,
                          python_env: Path | None) -> dict:
    """Write the repository of a head export; returns a summary (as write_repository does)."""
    from .output_dir import staged_directory
    from .triton import DECODER_IO, decoder_config
    from .triton_parts import MODELS_DIR, env_parameters, parameters_text, ship_chat_code

    manifest = export.manifest
    if manifest.task not in TASK_IO:
        raise InputError(str(export.directory), f"is an {manifest.architecture} ({manifest.task}): no Triton front model serves it")
    if runtime == "tensorrt":
        raise InputError("--runtime", "tensorrt serves engines of causal-LM exports; use python-ort or onnxruntime")
    if not (export.directory / TOKENIZER_FILE).is_file():
        raise InputError(str(export.directory), f"has no {TOKENIZER_FILE} to copy into the repository")
    env = env_parameters(python_env)
    with staged_directory(Path(repo), marker="README.md", force=force) as staging:
        graph = staging / GRAPH / "1"
        graph.mkdir(parents=True)
        for path in export.graph_files:
            shutil.copyfile(path, graph / path.name)
        if runtime == "python-ort":
            shutil.copyfile(MODELS_DIR / "decoder_ort.py", graph / "model.py")
        io = {"inputs": [t.to_json() for t in manifest.inputs], "outputs": [t.to_json() for t in manifest.outputs]}
        (staging / GRAPH / DECODER_IO).write_text(json.dumps(io, indent=2) + "\n")  # what `--check` compares with
        config = decoder_config(runtime, manifest.inputs, manifest.outputs, instances, name=GRAPH)
        (staging / GRAPH / "config.pbtxt").write_text(config + (parameters_text(env) if runtime == "python-ort" else ""))
        _write_front(staging / FRONT, export, instances, env, ship_chat_code, MODELS_DIR)
        (staging / "README.md").write_text(_readme(export, runtime))
    return {"runtime": runtime, "models": [GRAPH, FRONT], "repo": str(repo)}


def _write_front(model_dir: Path, export: ExportDir, instances: int, env: dict[str, str], ship, models_dir: Path) -> None:
    manifest = export.manifest
    version = model_dir / "1"
    version.mkdir(parents=True)
    shutil.copyfile(models_dir / "head.py", version / "model.py")
    spec = {"task": manifest.task, "model": GRAPH, "outputs": [t.name for t in manifest.outputs], "labels": list(manifest.labels),
            "problem_type": manifest.problem_type, "pad_token_id": export.config.pad_token_id,
            "max_position_embeddings": export.config.max_position_embeddings}
    (version / HEAD_SPEC).write_text(json.dumps(spec, indent=2) + "\n")
    for name in SIDE_FILES:
        if (export.directory / name).is_file():
            shutil.copyfile(export.directory / name, version / name)
    ship(version, HEAD_MODULES)
    (model_dir / "config.pbtxt").write_text(front_config(manifest.task, instances, env, export.config.hidden_size))


def check_head_repository(repo: Path, configs: dict) -> list[str]:
    """Problems of a head repository whose config.pbtxt files already parsed (`configs` by model name)."""
    from tritonclient.grpc import model_config_pb2

    from .contract import dtype
    from .triton import DECODER_IO, _check_decoder_io

    problems = [f"{repo}: model {name!r} missing" for name in (GRAPH, FRONT) if name not in configs]
    if FRONT not in configs:
        return problems
    version = repo / FRONT / "1"
    spec_path = version / HEAD_SPEC
    if not spec_path.is_file():
        return [*problems, f"{spec_path}: missing"]
    task = json.loads(spec_path.read_text()).get("task")
    if task not in TASK_IO:
        return [*problems, f"{spec_path}: task {task!r} is not one of {', '.join(TASK_IO)}"]
    config = configs[FRONT]
    for kind, expected, have in (("input", TASK_IO[task][0], config.input), ("output", TASK_IO[task][1], config.output)):
        found = {t.name: model_config_pb2.DataType.Name(t.data_type) for t in have}
        problems += [f"{repo / FRONT / 'config.pbtxt'}: {kind} {name!r} should be {dtype(k).triton}, is {found.get(name)}"
                     for name, k, _ in expected if found.get(name) != dtype(k).triton]
    if not config.HasField("dynamic_batching") or config.max_batch_size < 1:
        problems.append(f"{repo / FRONT / 'config.pbtxt'}: dynamic batching should be on")
    problems += _check_pooling(config, repo / FRONT / "config.pbtxt") if task == "feature-extraction" else []
    problems += [f"{version / name}: missing" for name in ("model.py", TOKENIZER_FILE, "exaone4/exporter/head_serving.py")
                 if not (version / name).is_file()]
    if GRAPH in configs:
        problems += _check_decoder_io(configs[GRAPH], repo / GRAPH / DECODER_IO)
    return problems


def _check_pooling(config, path: Path) -> list[str]:
    """The feature-extraction knobs, as the front model reads them at load."""
    knobs = {key: config.parameters[key].string_value for key in POOLING_PARAMETERS if key in config.parameters}
    problems = []
    if knobs.get("pooling", POOLINGS[0]) not in POOLINGS:
        problems.append(f"{path}: parameter pooling must be one of {', '.join(POOLINGS)}, got {knobs['pooling']!r}")
    if knobs.get("normalize", "false") not in ("true", "false"):
        problems.append(f"{path}: parameter normalize must be true or false, got {knobs['normalize']!r}")
    return problems


def _readme(export: ExportDir, runtime: str) -> str:
    manifest = export.manifest
    inputs, outputs = TASK_IO[manifest.task]
    ask = ", ".join(f'"{name}": ["..."]' for name, _, _ in inputs)
    labels = f" Labels: {', '.join(manifest.labels)}." if manifest.labels else ""
    return f"""# EXAONE 4 {manifest.task} on Triton Inference Server

Written by exaone4-export from a {manifest.target} {manifest.dtype} export of an {manifest.architecture}; graph runtime: {runtime}.{labels}

| model | what |
|---|---|
| `{GRAPH}` | the export's graph: input_ids, attention_mask -> {', '.join(t.name for t in manifest.outputs)} |
| `{FRONT}` | {', '.join(n for n, _, _ in inputs)} -> {', '.join(n for n, _, _ in outputs)}; dynamic batching, one BLS call to \
`{GRAPH}` per batch; runs exaone4-export's own code, shipped in `1/exaone4/` |

    tritonserver --model-repository=$PWD
    curl -s localhost:8000/v2/models/{FRONT}/infer -d '{{"inputs": [...]}}'   # or tritonclient, inputs {ask}

The Python-backend models need numpy, tokenizers (and onnxruntime for a python-ort graph) in the backend's
Python environment (`EXECUTION_ENV_PATH`).
"""
