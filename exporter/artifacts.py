"""Export and engine directories as small typed objects, opened once.

    export = ExportDir.open(path)          # manifest validated, files hash-checked, defaults applied
    export.manifest.target, export.config.num_layers, export.model_path, export.cache_layout()
    engine = EngineDir.open(path)          # build record validated, engine hash-checked

Every command reads an export's `export.json` or an engine's `build.json` through
these classes and nowhere else, so a default (a manifest from before `kv_cache`
existed), a legacy dtype spelling or a missing field is handled here once. Writers
build an `ExportManifest` / `BuildRecord` and call `write`; a derived export
(lower, quantize) is `dataclasses.replace` of its source's manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import Exaone4Config, load_config
from .contract import (
    BUILD_MANIFEST,
    CONFIG_FILE,
    DATA_FILE,
    ENGINE_FILE,
    ENGINE_FORMAT,
    EXPORT_FORMAT,
    EXPORT_MANIFEST,
    MODEL_FILE,
    CacheLayout,
    dtype,
)
from .errors import InputError
from .heads import CLASSIFIERS, LAYOUTS, Head, HeadConfig
from .jsonfile import JsonFields, read_json, sha256_file

REEXPORT = "export it again with this version of exaone4-export"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, dtype (contract spelling) and shape (ints or symbolic names)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @classmethod
    def from_json(cls, raw: Any, where: str) -> TensorSpec:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("shape"), list):
            raise InputError(where, f"a tensor needs a name, dtype and shape, got {str(raw)[:80]}")
        try:
            spelled = dtype(raw.get("dtype")).name
        except KeyError:
            raise InputError(where, f"tensor {raw['name']!r} has an unknown dtype {raw.get('dtype')!r}") from None
        return cls(raw["name"], spelled, tuple(raw["shape"]))

    @property
    def fixed_dims(self) -> list[int]:
        """The shape with every symbolic dimension as -1 (Triton's and TensorRT's spelling)."""
        return [d if isinstance(d, int) and d >= 0 else -1 for d in self.shape]

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class LayerRecord:
    index: int
    kind: str
    window: int | None
    rope: bool


@dataclass(frozen=True)
class ExportManifest:
    """The contents of `export.json` (docs/io-contract.md#the-manifest)."""

    target: str
    dtype: str
    opset: int
    source: dict  # {"checkpoint": path, "storage_dtype": ..., "sha256": {file: digest}}
    config: dict  # Exaone4Config.to_summary() of the checkpoint exported
    layers: tuple[LayerRecord, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: dict[str, str]  # file name -> sha256, for every file the graph needs
    passes: dict[str, Any]
    tool_versions: dict[str, str]
    export_seconds: float
    kv_cache: str = "full"
    logits: str = "all"
    max_context: int | None = None  # slots of each in-place buffer, for kv_cache "static"
    quantization: dict | None = None  # {"format": "fp8", ...} for quantized exports
    lowered_from: str | None = None
    quantized_from: str | None = None
    # The EXAONE 4 class exported (exporter/heads.py); a classifier's labels. Manifests from
    # before heads existed are causal LMs.
    architecture: str = Head.CAUSAL_LM.value
    task: str = LAYOUTS[Head.CAUSAL_LM].task
    num_labels: int | None = None
    id2label: dict[str, str] | None = None  # JSON object keys: the class index as a string
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    format: str = EXPORT_FORMAT

    @classmethod
    def head_fields(cls, head: HeadConfig) -> dict[str, Any]:
        """The manifest fields that record `head` (for `dataclasses.replace` or the constructor)."""
        summary = head.to_summary()
        labels = {"num_labels": head.num_labels, "id2label": {str(i): v for i, v in enumerate(head.id2label)},
                  "label2id": head.label2id, "problem_type": head.problem_type} if head.head in CLASSIFIERS else {}
        return {"architecture": summary["architecture"], "task": summary["task"], **labels}

    @property
    def head(self) -> Head:
        return Head(self.architecture)

    @property
    def labels(self) -> tuple[str, ...]:
        """A classifier's label names by class index; () for the other classes."""
        return tuple(self.id2label[str(i)] for i in range(self.num_labels or 0)) if self.id2label else ()

    @property
    def quantization_format(self) -> str | None:
        return (self.quantization or {}).get("format")

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.source["checkpoint"])

    def window_past_caps(self) -> dict[str, int]:
        """{past input name: W - 1} for the sliding layers of a window-cache export; {} for a full cache."""
        from .contract import KV_KINDS, past_name

        if self.kv_cache != "window":
            return {}
        return {past_name(layer.index, kind): layer.window - 1 for layer in self.layers if layer.window for kind in KV_KINDS}

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["layers"] = [asdict(layer) for layer in self.layers]
        data["io"] = {"inputs": [t.to_json() for t in data.pop("inputs")], "outputs": [t.to_json() for t in data.pop("outputs")]}
        return {"format": data.pop("format"), **{key: value for key, value in data.items() if value is not None}}

    def write(self, directory: Path) -> None:
        (Path(directory) / EXPORT_MANIFEST).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, raw: Any, path: Path) -> ExportManifest:
        where = str(path)
        if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
            raise InputError(where, f"not a manifest of this tool (format is not {EXPORT_FORMAT})")
        reader = JsonFields(raw, where, REEXPORT)
        io = reader.get("io", dict)
        layers = reader.get("layers", list)
        try:
            layer_records = tuple(LayerRecord(int(x["index"]), str(x["kind"]), x["window"], bool(x["rope"])) for x in layers)
        except (TypeError, KeyError, ValueError):
            raise InputError(f"{where}: layers", f"malformed; {REEXPORT}") from None
        return cls(
            target=reader.get("target", str),
            dtype=dtype(reader.get("dtype", str)).name,
            opset=reader.get("opset", int),
            source=reader.get("source", dict),
            config=reader.get("config", dict),
            layers=layer_records,
            inputs=tuple(TensorSpec.from_json(t, f"{where}: io.inputs") for t in _list(io, "inputs", where)),
            outputs=tuple(TensorSpec.from_json(t, f"{where}: io.outputs") for t in _list(io, "outputs", where)),
            files=reader.get("files", dict, default={}),  # refused below, naming model.onnx
            passes=reader.get("passes", dict, default={}),
            tool_versions=reader.get("tool_versions", dict, default={}),
            export_seconds=float(reader.get("export_seconds", (int, float), default=0.0)),
            kv_cache=reader.get("kv_cache", str, default="full"),  # manifests before the window cache
            logits=reader.get("logits", str, default="all"),  # manifests before --logits last
            max_context=reader.get("max_context", int, default=None),
            quantization=reader.get("quantization", dict, default=None),
            lowered_from=reader.get("lowered_from", str, default=None),
            quantized_from=reader.get("quantized_from", str, default=None),
            **_head_fields(reader, where),
        )


def _head_fields(reader: JsonFields, where: str) -> dict[str, Any]:
    """architecture, task and labels; absent in manifests from before heads (a causal LM)."""
    architecture = reader.get("architecture", str, default=Head.CAUSAL_LM.value)
    if architecture not in {head.value for head in Head}:
        raise InputError(f"{where}: architecture", f"{architecture!r} is not an EXAONE 4 class of this tool; {REEXPORT}")
    fields_ = {"architecture": architecture, "task": reader.get("task", str, default=LAYOUTS[Head(architecture)].task)}
    if Head(architecture) in CLASSIFIERS:
        fields_.update(num_labels=reader.get("num_labels", int), id2label=reader.get("id2label", dict),
                       label2id=reader.get("label2id", dict), problem_type=reader.get("problem_type", str, default=None))
        if sorted(fields_["id2label"]) != sorted(str(i) for i in range(fields_["num_labels"])):
            raise InputError(f"{where}: id2label", f"does not name labels 0..{fields_['num_labels'] - 1}; {REEXPORT}")
    return fields_


@dataclass(frozen=True)
class ExportDir:
    """An export directory: its manifest, its architecture, and where its files are."""

    directory: Path
    manifest: ExportManifest
    config: Exaone4Config

    @classmethod
    def open(cls, directory: Path, check_files: bool = True) -> ExportDir:
        """Read and validate `directory/export.json`; with `check_files`, refuse changed graph files."""
        directory = Path(directory)
        path = directory / EXPORT_MANIFEST
        if not path.is_file():
            raise InputError(str(directory), f"not an export of this tool (no {EXPORT_MANIFEST})")
        manifest = ExportManifest.from_json(read_json(path), path)
        _check_file_names(manifest.files, path)
        if check_files:
            check_hashes(directory, manifest.files, EXPORT_MANIFEST, "export")
        config = load_config(directory / CONFIG_FILE)
        if config.to_summary() != manifest.config:
            raise InputError(str(directory / CONFIG_FILE), f"differs from the architecture recorded in {EXPORT_MANIFEST}")
        if ExportManifest.head_fields(config.head) != {key: getattr(manifest, key) for key in ExportManifest.head_fields(config.head)}:
            raise InputError(str(directory / CONFIG_FILE), f"its architectures or labels differ from those recorded in {EXPORT_MANIFEST}")
        return cls(directory, manifest, config)

    @staticmethod
    def exists(directory: Path) -> bool:
        return (Path(directory) / EXPORT_MANIFEST).is_file()

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def graph_files(self) -> list[Path]:
        """model.onnx and, when the weights are external, model.onnx.data."""
        return [self.directory / name for name in (MODEL_FILE, DATA_FILE) if name in self.manifest.files]

    @property
    def kv_dtype(self) -> str:
        return self.manifest.dtype

    def cache_layout(self) -> CacheLayout:
        return CacheLayout.of(self.config, self.kv_dtype, rings=self.has_rings)

    @property
    def has_rings(self) -> bool:
        """Whether the sliding layers' in-place caches are rings (static exports since the ring; older ones are not)."""
        return any(isinstance(record, dict) and record.get("ring_caches") for record in self.manifest.passes.values())

    @property
    def static_context(self) -> int | None:
        """The in-place buffers' length for a `--kv-cache static` export, else None."""
        return self.manifest.max_context if self.manifest.kv_cache == "static" else None

    def check_architecture(self, config: Exaone4Config, checkpoint_dir: Path) -> None:
        """Refuse a checkpoint whose architecture (or class, or labels) is not the one this export came from."""
        head = ExportManifest.head_fields(config.head)
        if config.to_summary() != self.manifest.config or head != {key: getattr(self.manifest, key) for key in head}:
            raise InputError(str(checkpoint_dir), f"its architecture differs from the one {self.directory} was exported from")


@dataclass(frozen=True)
class BuildRecord:
    """The contents of `build.json`: how an engine was built and what it binds."""

    provider: str
    provider_version: str
    precision: str
    compute_capabilities: list[str] | str  # a list for ahead-of-time builds, else "the build machine's GPU"
    profiles: list[dict]
    options: dict
    io: tuple[tuple[str, TensorSpec], ...]  # (kind "input" / "output", tensor)
    num_layers: int
    layer_types: dict[str, int]
    layers: list[dict]
    decoder_layers: int
    build_seconds: float
    engine_bytes: int
    engine_sha256: str
    export: dict  # the source export: directory, target, dtype, kv_cache, logits, quantization, files
    format: str = ENGINE_FORMAT

    @property
    def attention(self) -> str:
        return self.options.get("attention", "native")

    @property
    def export_dir(self) -> Path:
        return Path(self.export["directory"])

    def tensors(self, kind: str) -> tuple[TensorSpec, ...]:
        return tuple(tensor for k, tensor in self.io if k == kind)

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["io"] = [{"kind": kind, **tensor.to_json()} for kind, tensor in self.io]
        return {"format": data.pop("format"), **data}

    def write(self, directory: Path) -> None:
        (Path(directory) / BUILD_MANIFEST).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, raw: Any, path: Path) -> BuildRecord:
        where = str(path)
        if not isinstance(raw, dict):
            raise InputError(where, "not a build record of this tool (not a JSON object)")
        if raw.get("format") != ENGINE_FORMAT:
            raise InputError(where, f"not a build record of this tool (format is not {ENGINE_FORMAT})")
        reader = JsonFields(raw, where, REEXPORT)
        io = []
        for entry in reader.get("io", list):
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if kind not in ("input", "output"):
                raise InputError(f"{where}: io", f"each binding needs kind input or output, got {str(entry)[:80]}")
            io.append((kind, TensorSpec.from_json(entry, f"{where}: io")))
        return cls(
            provider=reader.get("provider", str),
            provider_version=reader.get("provider_version", str),
            precision=reader.get("precision", str),
            compute_capabilities=reader.get("compute_capabilities", (list, str)),
            profiles=reader.get("profiles", list),
            options=reader.get("options", dict, default={}),
            io=tuple(io),
            num_layers=reader.get("num_layers", int),
            layer_types=reader.get("layer_types", dict, default={}),
            layers=reader.get("layers", list, default=[]),
            decoder_layers=reader.get("decoder_layers", int),
            build_seconds=float(reader.get("build_seconds", (int, float), default=0.0)),
            engine_bytes=reader.get("engine_bytes", int),
            engine_sha256=reader.get("engine_sha256", str),
            export=reader.get("export", dict),
        )


@dataclass(frozen=True)
class EngineDir:
    """An engine directory: the build record, the architecture (config.json copied beside it)."""

    directory: Path
    build: BuildRecord
    config: Exaone4Config = field(compare=False)

    @classmethod
    def open(cls, directory: Path) -> EngineDir:
        """Read and validate build.json and refuse an engine file changed since the build."""
        directory = Path(directory)
        path = directory / BUILD_MANIFEST
        if not path.is_file():
            raise InputError(str(directory), f"not an engine directory of this tool (no {BUILD_MANIFEST})")
        build = BuildRecord.from_json(read_json(path), path)
        engine = directory / ENGINE_FILE
        if not engine.is_file():
            raise InputError(str(engine), "engine file missing")
        if sha256_file(engine) != build.engine_sha256:  # in blocks: an engine can be tens of GB
            raise InputError(str(engine), f"changed since it was built (sha256 does not match {BUILD_MANIFEST})")
        return cls(directory, build, load_config(directory / CONFIG_FILE))

    @staticmethod
    def exists(directory: Path) -> bool:
        return (Path(directory) / BUILD_MANIFEST).is_file()

    @property
    def engine_path(self) -> Path:
        return self.directory / ENGINE_FILE

    def cache_layout(self) -> CacheLayout:
        past = next(t for t in self.build.tensors("input") if t.name.startswith("past_key_values."))
        return CacheLayout.of(self.config, past.dtype)

    def source_export(self) -> ExportDir:
        """The export the engine was built from (its IO and manifest), unchanged since."""
        return ExportDir.open(self.build.export_dir)


def check_hashes(directory: Path, files: dict[str, str], manifest_name: str, what: str) -> None:
    """Raise InputError unless every listed file is present with the recorded sha256.

    Hashing reads every byte: about 2 s per GB on one core, paid once per command.
    """
    for name, digest in files.items():
        path = Path(directory) / name
        if not path.is_file():
            raise InputError(str(path), f"missing (listed in {manifest_name})")
        if sha256_file(path) != digest:
            raise InputError(str(path), f"sha256 does not match {manifest_name} (changed after {what}?)")


def _check_file_names(files: dict, path: Path) -> None:
    if MODEL_FILE not in files:
        raise InputError(f"{path}: files", f"must list {MODEL_FILE} with its sha256")
    for name, digest in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise InputError(f"{path}: files", f"{name!r} is not a file name inside the export")
        if not isinstance(digest, str):
            raise InputError(f"{path}: files", f"{name!r} needs a sha256 string")


def _list(raw: dict, key: str, where: str) -> list:
    value = raw.get(key)
    if not isinstance(value, list):
        raise InputError(f"{where}: io.{key}", f"must be a list; {REEXPORT}")
    return value
