"""Every command on checkpoints laid out as LG AI Research publishes EXAONE 4.0 (tests/lg_layout.py).

Three fixtures: the bundled model rewritten in the 32B layout ("bundled"), and small random
models in the 1.2B layout (all layers global and rotated, tied) and the 32B layout (LLLG, untied).
Each is exported once (canonical, then lowered to ort) and that export is shared. The chat path
of `generate` is checked token for token against transformers reading the same directory.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from exaone4.exporter.calibrate import calibration_ids
from exaone4.exporter.chat import ChatTokenizer, parse_response
from exaone4.exporter.cli import main
from exaone4.exporter.config import load_config
from exaone4.exporter.tiny import TINY_DIR

from lg_layout import lg_from_bundled, lg_random

transformers = pytest.importorskip("transformers")

FIXTURES = ["bundled", "1.2b", "32b"]
EXPECTED = {  # layer pattern and rope flags `inspect` must show
    "bundled": ("LLLGLLLG", [True, True, True, False] * 2),
    "1.2b": ("GGG", [True] * 3),
    "32b": ("LLLG", [True, True, True, False]),
}
PROMPT = "Show me def dumps"
MAX_NEW = 96  # the bundled model ends all three chat cases with [|endofturn|] within this
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These models are tiny: one intra-op thread is faster than two, and on a busy 2-core machine
    two spinning threads made each decode step 10x slower. Restored afterwards for other modules."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lg")


@pytest.fixture(scope="module")
def checkpoints(root):
    return {"bundled": lg_from_bundled(root / "bundled"),
            "1.2b": lg_random(root / "random-1.2b", "1.2b"),
            "32b": lg_random(root / "random-32b", "32b")}


@pytest.fixture(scope="module")
def exports(root, checkpoints):
    """{fixture: {"canonical": dir, "ort": dir}}, through `export` and `lower`."""
    made = {}
    for name, checkpoint in checkpoints.items():
        canonical, ort = root / f"{name}-canonical", root / f"{name}-ort"
        ok(cli("export", checkpoint, "-o", canonical, "--quiet"))
        ok(cli("lower", canonical, "-o", ort, "--target", "ort", "--quiet"))
        made[name] = {"canonical": canonical, "ort": ort}
    return made


# ----------------------------------------------------------------------------- the layout itself


def test_bundled_fixture_has_lg_files_and_transformers_reads_them(checkpoints):
    directory = checkpoints["bundled"]
    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    assert "chat_template" not in tokenizer_config
    assert tokenizer_config["added_tokens_decoder"]["2"]["content"] == "[|endofturn|]"
    assert len(tokenizer_config["added_tokens_decoder"]) == 16
    assert json.loads((directory / "generation_config.json").read_text())["eos_token_id"] == [2]
    config = json.loads((directory / "config.json").read_text())
    assert config["sliding_window_pattern"] == "LLLG" and config["sliding_window"] == 16
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    assert tokenizer.chat_template == (directory / "chat_template.jinja").read_text()  # read from the .jinja file
    assert transformers.GenerationConfig.from_pretrained(directory).eos_token_id == [2]


def test_pattern_only_config_parses_to_the_bundled_layers(root):
    """The 32B form without layer_types: our parser expands "LLLG"; transformers 5.x cannot."""
    pattern_only = lg_from_bundled(root / "pattern-only", layer_types=False)
    assert "layer_types" not in json.loads((pattern_only / "config.json").read_text())
    assert load_config(pattern_only / "config.json").layers == load_config(TINY_DIR / "config.json").layers
    shown = json.loads(ok(cli("inspect", pattern_only, "--json")).stdout)
    assert "".join("L" if k == "sliding_attention" else "G" for k in shown["layer_kinds"]) == "LLLGLLLG"
    try:
        hf = transformers.AutoConfig.from_pretrained(pattern_only)
    except TypeError as exc:  # Exaone4Config.__post_init__: (i + 1) % "LLLG" (transformers 5.24)
        assert "%" in str(exc)
    else:  # a transformers that reads the string must agree with us
        assert hf.layer_types == [s.kind.value for s in load_config(TINY_DIR / "config.json").layers]


def test_quantize_calibrates_on_the_template_from_chat_template_jinja(checkpoints):
    """quantize's default calibration text includes chat turns rendered with the checkpoint's template:
    the same text from the LG layout as from the bundled one (not silently without the turns)."""
    ids, _ = calibration_ids(checkpoints["bundled"], None, 4096)
    assert ids == calibration_ids(TINY_DIR, None, 4096)[0]
    assert ChatTokenizer.open(TINY_DIR).token_id("[|assistant|]") in ids


# ----------------------------------------------------------------------------- commands


@pytest.mark.parametrize("name", FIXTURES)
def test_inspect_shows_layer_pattern_and_rope_layers(checkpoints, name):
    pattern, rope = EXPECTED[name]
    summary = json.loads(ok(cli("inspect", checkpoints[name], "--json")).stdout)
    assert "".join("L" if k == "sliding_attention" else "G" for k in summary["layer_kinds"]) == pattern
    assert summary["layer_rope"] == rope
    assert summary["tie_word_embeddings"] == (name != "32b") and summary["rope"]["type"] == "llama3"
    assert f"({pattern}: L sliding, G global)" in ok(cli("inspect", checkpoints[name])).output


@pytest.mark.parametrize("name", FIXTURES)
def test_exports_carry_the_lg_side_files(exports, name):
    for directory in exports[name].values():
        assert (directory / "chat_template.jinja").is_file() and (directory / "generation_config.json").is_file()
    genai = json.loads((exports[name]["ort"] / "genai_config.json").read_text())
    assert genai["model"]["eos_token_id"] == [2]


@pytest.mark.parametrize("name", FIXTURES)
def test_verify_passes_against_reference_and_transformers(exports, checkpoints, root, name):
    result = ok(cli("verify", exports[name]["ort"], "--checkpoint", checkpoints[name], "--report", root / f"{name}-report",
                    "--scenario", "prefill_decode", "--scenario", "left_padded_batch", "--json", "--quiet"))
    report = json.loads(result.stdout)
    assert report["passed"] and report["skipped"] == {}
    assert set(report["scenarios"]["prefill_decode"]) == {"ort", "transformers"}


def test_verify_pattern_only_checkpoint_with_ort(exports, root):
    """The reference built from the pattern-only config matches the export made from layer_types."""
    pattern_only = lg_from_bundled(root / "pattern-only-verify", layer_types=False)
    ok(cli("verify", exports["bundled"]["ort"], "--checkpoint", pattern_only, "--backend", "ort",
           "--report", root / "pattern-only-report", "--scenario", "prefill_decode", "--quiet"))


def test_verify_pattern_only_checkpoint_with_default_backends(exports, root):
    """transformers cannot read a pattern-only config by itself; the transformers backend spells out layer_types."""
    pattern_only = lg_from_bundled(root / "pattern-only-default", layer_types=False)
    result = cli("verify", exports["bundled"]["ort"], "--checkpoint", pattern_only, "--report",
                 root / "pattern-only-default-report", "--scenario", "prefill_decode", "--quiet")
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["1.2b", "32b"])
def test_trt_export_quantize_build(checkpoints, root, name):
    """fp16 trt export, fp8 quantize (calibrated on the checkpoint), and a TensorRT for RTX engine."""
    trt16, fp8, engine = root / f"{name}-trt16", root / f"{name}-fp8", root / f"{name}-engine"
    ok(cli("export", checkpoints[name], "-o", trt16, "--target", "trt", "--dtype", "float16", "--quiet"))
    ok(cli("quantize", trt16, "--checkpoint", checkpoints[name], "-o", fp8, "--quiet"))
    quantization = json.loads((fp8 / "export.json").read_text())["quantization"]
    layers = len(EXPECTED[name][0])
    assert quantization["format"] == "fp8" and len(quantization["activation_amax"]) == 7 * layers
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed")
    ok(cli("build", fp8, "--precision", "fp8", "-o", engine, "--quiet"))
    build = json.loads((engine / "build.json").read_text())
    assert build["precision"] == "fp8" and build["layer_types"]["ATTENTION_INPUT"] == layers
    assert build["layer_types"]["ROTARY_EMBEDDING"] == 2 * sum(EXPECTED[name][1])  # q and k of each rotated layer
    assert "ATTENTION_INPUT" in ok(cli("inspect-engine", engine)).output


# ----------------------------------------------------------------------------- chat: CLI against transformers

CASES = {"plain": dict(think=False, tools=None), "think": dict(think=True, tools=None),
         "tools": dict(think=False, tools=TOOLS)}


@pytest.fixture(scope="module")
def hf_models(checkpoints):
    return {name: transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
            for name, d in checkpoints.items()}


def transformers_chat(directory, model, think: bool, tools) -> tuple[list[int], list[int], str, bool]:
    """(prompt ids, new ids without the final eos, their text, whether it stopped at an eos), all read by
    transformers from `directory`: template from chat_template.jinja, eos list from generation_config.json."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tools=tools, add_generation_prompt=True,
                                           enable_thinking=think, return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             do_sample=False, max_new_tokens=MAX_NEW)  # eos and pad from generation_config.json
    new = out[0, len(prompt):].tolist()
    stopped = bool(new) and new[-1] in model.generation_config.eos_token_id
    if stopped:
        new = new[:-1]  # the CLI stops before printing the stop token
    return prompt, new, tokenizer.decode(new), stopped


def cli_chat(model_dir, think: bool, tools_file, *backend) -> dict:
    flags = (["--think"] if think else []) + (["--tools", tools_file] if tools_file else [])
    return json.loads(ok(cli("generate", model_dir, "--prompt", PROMPT, "--json", "--max-new-tokens", MAX_NEW,
                             *flags, *backend)).stdout)


@pytest.mark.parametrize("name, case", [("bundled", c) for c in CASES] + [("1.2b", "plain"), ("32b", "plain")])
def test_generate_greedy_equals_transformers(checkpoints, exports, hf_models, tmp_path, name, case):
    think, tools = CASES[case]["think"], CASES[case]["tools"]
    tools_file = None
    if tools:
        tools_file = tmp_path / "tools.json"
        tools_file.write_text(json.dumps(tools))
    prompt, new, text, stopped = transformers_chat(checkpoints[name], hf_models[name], think, tools)
    assert stopped == (name == "bundled")  # the trained model ends its turn; random ones run to MAX_NEW
    ours = ChatTokenizer.open(checkpoints[name])  # what `generate` encodes (exporter/cli.py)
    rendered = ours.render([{"role": "user", "content": PROMPT}], enable_thinking=think, tools=tools)
    assert ours.encode(rendered) == prompt
    assert len(new) >= 8 and len(set(new)) > 3  # a real continuation, not one repeated token
    for model_dir, backend in ((checkpoints[name], ("--backend", "torch")), (exports[name]["ort"], ())):
        answer = cli_chat(model_dir, think, tools_file, *backend)
        assert answer["backend"] == (backend[1] if backend else "ort")
        assert answer["prefill_tokens"] == len(prompt)
        assert answer["tokens"] == new, (answer["text"], text)
        assert answer["text"] == text


def test_parse_response_reads_a_tool_call():
    text = 'Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Seoul"}}</tool_call>'
    parsed = parse_response(text)
    assert parsed.tool_calls == [{"name": "get_weather", "arguments": {"city": "Seoul"}}]
    assert parsed.content == "Let me check." and parsed.reasoning is None
    thought = parse_response("weather needs a tool</think>\n\n" + text, thinking_opened=True)
    assert thought.reasoning == "weather needs a tool" and thought.tool_calls == parsed.tool_calls


# ----------------------------------------------------------------------------- triton


def test_triton_writes_and_checks_a_repository(exports, root):
    """The repository keeps LG's chat_template.jinja; serving it is tests/test_triton.py, its chat path tests/test_chat_path.py."""
    repo = root / "triton-repo"
    ok(cli("triton", exports["bundled"]["ort"], "--repo", repo))
    ok(cli("triton", "--repo", repo, "--check"))
    assert (repo / "exaone4" / "1" / "chat_template.jinja").is_file()
