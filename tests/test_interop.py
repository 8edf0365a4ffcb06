"""Interop with the tools users already have: onnxruntime-genai and Polygraphy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.generate import generate_tokens
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, TorchRunner
from exaone4.exporter.tiny import TINY_DIR


def genai_greedy(og, model, ids: list[int], new_tokens: int) -> list[int]:
    """onnxruntime-genai's greedy continuation of `ids` with a loaded `og.Model`."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


def test_onnxruntime_genai_generates_our_greedy_tokens(tiny_exports):
    og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")
    export = tiny_exports["ort"]
    config = json.loads((export / "genai_config.json").read_text())
    assert config["model"]["decoder"]["inputs"]["past_key_names"] == "past_key_values.%d.key"
    tokenizer = ChatTokenizer.open(TINY_DIR)
    ids = tokenizer.encode(tokenizer.render([{"role": "user", "content": "Show me def dumps"}]))
    model = og.Model(str(export))
    genai_tokens = genai_greedy(og, model, ids, 40)
    reference = load_reference_model(Checkpoint.open(TINY_DIR))
    ours = list(generate_tokens(KVCacheSession(TorchRunner(reference), CacheLayout.of(reference.config)), ids, 40, {2}))
    assert len(ours) > 10 and genai_tokens == ours
    assert list(og.Tokenizer(model).encode(tokenizer.render([{"role": "user", "content": "Show me def dumps"}]))) == ids


def test_polygraphy_run_checks_the_standard_export_against_our_reference_outputs(tiny_exports, tmp_path):
    pytest.importorskip("polygraphy", reason="polygraphy is not installed")
    from click.testing import CliRunner

    from exaone4.exporter.cli import main

    result = CliRunner().invoke(main, ["verify", str(tiny_exports["standard"]), "--checkpoint", "bundled:tiny", "--backend", "ort",
                                       "--scenario", "prefill_decode", "--report", str(tmp_path / "report"),
                                       "--polygraphy", str(tmp_path / "polygraphy"), "--quiet"])
    assert result.exit_code == 0, result.output
    inputs, outputs = tmp_path / "polygraphy" / "inputs.json", tmp_path / "polygraphy" / "outputs.json"
    assert inputs.is_file() and outputs.is_file()
    command = [str(Path(sys.executable).parent / "polygraphy"), "run", str(tiny_exports["standard"] / "model.onnx"), "--onnxrt",
               "--load-inputs", str(inputs), "--load-outputs", str(outputs), "--atol", "1e-4", "--rtol", "1e-4"]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "PASSED" in run.stdout + run.stderr
