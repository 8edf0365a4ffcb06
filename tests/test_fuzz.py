"""Fuzz targets (hypothesis) for the two parsers that read untrusted bytes: the safetensors
header reader and the config.json parser (plus the shard index, which also comes from the
checkpoint).

The property is the same for every target: whatever the bytes, the parser returns a valid
parse or raises `InputError`, never another exception type, and never hangs (each example
runs under a 10 s alarm). Where a parse is accepted, it must really be usable: an accepted
safetensors file loads every tensor through the safetensors library; an accepted config has
positive sizes, divisible heads and one layer spec per layer.

Examples are bounded and derandomized so CI is reproducible (a few seconds in all).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import SMALL_CONFIG, write_json, write_random_checkpoint
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from exaone4.exporter.checkpoint import Checkpoint, _read_headers
from exaone4.exporter.config import Exaone4Config, LayerKind, load_config, parse_config
from exaone4.exporter.errors import InputError

from hardening import fuzz_settings, no_hang, safetensors_bytes

FUZZ = "fuzz (hypothesis)"
CLEAN = "InputError or a valid parse; no other exception, no hang"
TIMEOUT_S = 10

# Any JSON document: what a hostile config.json, header or index can hold. Huge ints, NaN and
# Infinity are included: Python's json reads all three.
JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**400)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def clean(call):
    """Run `call`; return its result, or None when it refused with InputError. Anything else fails."""
    with no_hang(TIMEOUT_S):
        try:
            return call()
        except InputError as exc:
            assert str(exc).strip() and "\n" not in str(exc), "an InputError is one non-empty line"
            return None


# --------------------------------------------------------------------------- safetensors


@pytest.fixture
def valid_file(tmp_path):
    """A real safetensors file of three small tensors (one bf16, one empty), as bytes."""
    path = tmp_path / "valid.safetensors"
    save_file({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.bfloat16),
               "c": torch.zeros(0, 3)}, str(path), metadata={"format": "pt"})
    return path.read_bytes()


def header_of(data: bytes) -> dict:
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length])


def accepted_file_really_loads(path) -> None:
    """The property's other half: a file the reader accepts is one the library reads in full."""
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            f.get_tensor(name)


def check_safetensors(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    if clean(lambda: _read_headers([path])) is not None:
        accepted_file_really_loads(path)


@pytest.mark.hardening(FUZZ, tried="safetensors header reader: arbitrary bytes", expect=CLEAN)
@fuzz_settings(200)
@given(data=st.binary(max_size=300))
def test_safetensors_reader_on_arbitrary_bytes(tmp_path, hardening_cases, data):
    hardening_cases.add()
    check_safetensors(tmp_path, data)


def _mutate_bytes(data: bytes, position: int, value: int, cut: int | None) -> bytes:
    mutated = bytearray(data)
    mutated[position % len(mutated)] = value
    return bytes(mutated[:cut] if cut is not None else mutated)


@pytest.mark.hardening(FUZZ, tried="safetensors header reader: byte flips and truncations of a valid file", expect=CLEAN)
@fuzz_settings(200)
@given(position=st.integers(0, 10**6), value=st.integers(0, 255), cut=st.none() | st.integers(0, 400))
def test_safetensors_reader_on_mutated_bytes(tmp_path, valid_file, hardening_cases, position, value, cut):
    hardening_cases.add()
    check_safetensors(tmp_path, _mutate_bytes(valid_file, position, value, cut))


@pytest.mark.hardening(FUZZ, tried="safetensors header reader: header fields replaced by any JSON, length field changed",
                       expect=CLEAN)
@fuzz_settings(250)
@given(tensor=st.sampled_from(["a", "b", "c", "__metadata__", "new"]),
       field=st.sampled_from(["dtype", "shape", "data_offsets", None]),
       value=JSON_VALUES,
       length_delta=st.sampled_from([0, 0, 0, -1, 1, -8, 2**40]))
def test_safetensors_reader_on_mutated_headers(tmp_path, valid_file, hardening_cases, tensor, field, value, length_delta):
    hardening_cases.add()
    header = header_of(valid_file)
    body = valid_file[8 + int.from_bytes(valid_file[:8], "little"):]
    if field is None or not isinstance(header.get(tensor), dict):
        header[tensor] = value
    else:
        header[tensor][field] = value
    raw = json.dumps(header).encode()
    check_safetensors(tmp_path, safetensors_bytes(raw, body, length=max(len(raw) + length_delta, 0)))


# --------------------------------------------------------------------------- config.json


def assert_usable(config: Exaone4Config) -> None:
    """What every accepted config must satisfy for the model and the export to be built from it."""
    sizes = (config.vocab_size, config.hidden_size, config.intermediate_size, config.num_layers, config.num_heads,
             config.num_kv_heads, config.head_dim, config.max_position_embeddings)
    assert all(isinstance(s, int) and s > 0 for s in sizes)
    assert config.num_heads % config.num_kv_heads == 0 and config.head_dim % 2 == 0
    assert len(config.layers) == config.num_layers
    assert all((spec.window is None) == (spec.kind is LayerKind.GLOBAL) for spec in config.layers)
    rope = config.rope
    numbers = (config.rms_norm_eps, rope.theta, rope.factor, rope.low_freq_factor, rope.high_freq_factor)
    assert all(math.isfinite(x) and x > 0 for x in numbers)
    json.dumps(config.to_summary(), allow_nan=False)  # manifests must be able to hold it


def check_config_bytes(tmp_path, data: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(data)
    config = clean(lambda: load_config(path))
    if config is not None:
        assert_usable(config)


@pytest.mark.hardening(FUZZ, tried="config parser: arbitrary bytes", expect=CLEAN)
@fuzz_settings(150)
@given(data=st.binary(max_size=200))
def test_config_parser_on_arbitrary_bytes(tmp_path, hardening_cases, data):
    hardening_cases.add()
    check_config_bytes(tmp_path, data)


@pytest.mark.hardening(FUZZ, tried="config parser: any JSON document", expect=CLEAN)
@fuzz_settings(150)
@given(document=JSON_VALUES)
def test_config_parser_on_any_json(hardening_cases, document):
    hardening_cases.add()
    config = clean(lambda: parse_config(document))
    assert config is None  # no random document is a full EXAONE 4 config


CONFIG_KEYS = sorted(SMALL_CONFIG) + ["head_dim", "rope_scaling", "rope_parameters", "sliding_window_pattern",
                                      "rms_norm_eps", "eos_token_id", "hidden_act", "auto_map"]


@pytest.mark.hardening(FUZZ, tried="config parser: fields of a valid config replaced by any JSON or removed", expect=CLEAN)
@fuzz_settings(400)
@given(changes=st.dictionaries(st.sampled_from(CONFIG_KEYS), st.none() | JSON_VALUES, min_size=1, max_size=3),
       nested=st.sampled_from(["rope_type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
                               "original_max_position_embeddings"]),
       nested_value=JSON_VALUES)
def test_config_parser_on_mutated_fields(hardening_cases, changes, nested, nested_value):
    hardening_cases.add()
    raw = dict(SMALL_CONFIG, rope_parameters={"rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0})
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    if isinstance(raw.get("rope_parameters"), dict):
        raw["rope_parameters"] = dict(raw["rope_parameters"], **{nested: nested_value})
    config = clean(lambda: parse_config(raw))
    if config is not None:
        assert_usable(config)


@pytest.mark.hardening(FUZZ, tried="config parser: byte flips in a valid config.json", expect=CLEAN)
@fuzz_settings(150)
@given(position=st.integers(0, 10**6), value=st.integers(0, 255))
def test_config_parser_on_flipped_bytes(tmp_path, hardening_cases, position, value):
    hardening_cases.add()
    data = bytearray(json.dumps(SMALL_CONFIG).encode())
    data[position % len(data)] = value
    check_config_bytes(tmp_path, bytes(data))


@pytest.mark.hardening(FUZZ, tried="config parser: JSON nested 100,000 deep, an int of 5,000 digits", expect=CLEAN)
@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"model_type": "exaone4", "vocab_size": ' + "9" * 5000 + "}"],
                         ids=["deep", "long-int"])
def test_config_parser_on_pathological_json(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(InputError, match="config.json"):
        with no_hang(TIMEOUT_S):
            load_config(path)


# --------------------------------------------------------------------------- shard index


@pytest.fixture
def sharded(tmp_path):
    write_random_checkpoint(tmp_path / "ckpt")
    return tmp_path / "ckpt"


@pytest.mark.hardening(FUZZ, tried="shard index: any JSON as model.safetensors.index.json", expect=CLEAN)
@fuzz_settings(150)
@given(index=JSON_VALUES | st.fixed_dictionaries({"weight_map": JSON_VALUES})
       | st.fixed_dictionaries({"weight_map": st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3)}))
def test_shard_index_parser_on_any_json(sharded, hardening_cases, index):
    hardening_cases.add()
    write_json(sharded / "model.safetensors.index.json", index)
    clean(lambda: Checkpoint.open(sharded))
