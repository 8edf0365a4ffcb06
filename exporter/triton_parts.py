"""Pieces both Triton repository layouts write: config.pbtxt text, the shipped package, the chat files checked.

The BLS layout (exporter/triton.py: decoder + generation models) and the resident
engine layout (exporter/triton_engine.py) share these, so a generation model's IO,
its parameters and the code copied beside its model.py are spelled once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .chat import SHIPPED_MODULES, ChatTokenizer
from .contract import SIDE_FILES, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, dtype
from .errors import InputError
from .serving.inputs import GENERATION_INPUTS, GENERATION_OUTPUTS

DECODER, GENERATE, STREAM = "exaone4_decoder", "exaone4", "exaone4_stream"  # the repository's model names
PACKAGE_DIR = Path(__file__).resolve().parent  # exaone4/exporter, whose SHIPPED_MODULES are copied
MODELS_DIR = PACKAGE_DIR / "triton_models"
ENV_PARAMETER = "EXECUTION_ENV_PATH"  # the Python backend's environment for a model


def tensor_line(name: str, data_type: str, dims: str, optional: bool = False) -> str:
    extra = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {data_type} dims: {dims}{extra} }}'


def parameters_text(parameters: dict[str, str]) -> str:
    """config.pbtxt `parameters` entries, one a line."""
    return "".join(f'parameters: {{ key: "{key}", value: {{ string_value: "{value}" }} }}\n' for key, value in parameters.items())


def env_parameters(python_env: Path | None) -> dict[str, str]:
    return {ENV_PARAMETER: str(Path(python_env).resolve())} if python_env else {}


def generation_config(name: str, decoupled: bool, instances: int, parameters: dict[str, str] | None = None) -> str:
    """config.pbtxt of a generation model: the TensorRT-LLM ensemble's text IO, Python backend, CPU instances."""
    lines = [f'name: "{name}"', 'backend: "python"', "max_batch_size: 0"]
    if decoupled:
        lines.append("model_transaction_policy { decoupled: true }")
    lines.append("input [")
    lines.append(",\n".join(tensor_line(n, dtype(t).triton, "[ 1 ]", opt) for n, t, opt in GENERATION_INPUTS))
    lines += ["]", "output [", ",\n".join(tensor_line(name, dtype("string").triton, "[ -1 ]") for name in GENERATION_OUTPUTS), "]",
              f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]", ""]
    return "\n".join(lines) + parameters_text(parameters or {})


def ship_chat_code(version: Path, modules: tuple[str, ...] = SHIPPED_MODULES) -> None:
    """Copy exaone4.exporter's `modules` (the chat path and the engine by default) beside a model's model.py."""
    package = version / "exaone4" / "exporter"
    package.mkdir(parents=True)
    (version / "exaone4" / "__init__.py").write_text('"""exaone4-export modules shipped for the Triton Python-backend models."""\n')
    for name in modules:
        path = PACKAGE_DIR / name
        if path.is_dir():
            shutil.copytree(path, package / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(path, package / name)


def generation_files(source: Path) -> list[Path]:
    """The side files the generation models read, after checking they make a working chat path.

    Opening the chat tokenizer here refuses what would otherwise fail only when the
    server loads the model: no template, special tokens missing from the vocabulary,
    a malformed eos_token_id, no stop token.
    """
    for required in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE):
        if not (source / required).is_file():
            raise InputError(str(source), f"has no {required} to copy into the repository")
    check_chat(source)
    return [source / name for name in SIDE_FILES if (source / name).is_file()]


def check_chat(directory: Path) -> ChatTokenizer:
    chat = ChatTokenizer.open(directory)
    if chat.template is None:
        raise InputError(str(directory), "has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json)")
    return chat


def config_parameters(config) -> dict[str, str]:
    """A parsed ModelConfig's `parameters` as {key: string value}."""
    return {key: value.string_value for key, value in config.parameters.items()}
