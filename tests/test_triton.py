"""Triton deployment: the generated repository validates, and a real server serves it.

The server is the real `tritonserver` binary with the Python backend (unpacked
from the nvidia-pytriton wheel by scripts/setup_triton.sh), started on loopback
ports and stopped by its pid whatever happens. It serves the python-ort
repository of the bundled model laid out as LG publishes EXAONE 4.0 (template in
chat_template.jinja only, eos ids a list in generation_config.json: tests/lg_layout.py),
and its greedy text is compared with transformers' `generate` on the same checkpoint.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner

from exaone4.exporter.chat import ChatTokenizer, parse_response
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.generate import generate_tokens
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, TorchRunner
from exaone4.exporter.tiny import TINY_DIR

from test_chat_path import WEATHER
from triton_server import ensure_triton, triton_server

http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed")
PROMPTS = ["Show me def dumps", "Show me def quote"]


def reference_text(prompt: str, max_tokens: int) -> str:
    """Greedy generation with the reference model through the CLI's chat path."""
    chat = ChatTokenizer.open(TINY_DIR)
    model = load_reference_model(Checkpoint.open(TINY_DIR))
    ids = chat.prompt_ids([{"role": "user", "content": prompt}])
    session = KVCacheSession(TorchRunner(model), CacheLayout.of(model.config))
    tokens = [t for t in generate_tokens(session, ids, max_tokens, chat.stop_ids) if t not in chat.stop_ids]
    return chat.decode(tokens)


@pytest.fixture(scope="module")
def repo(lg_bundled_exports, tmp_path_factory):
    triton = ensure_triton()
    path = tmp_path_factory.mktemp("triton") / "repo"
    env = ["--python-env", str(triton / "env")] if triton else []
    result = CliRunner().invoke(main, ["triton", str(lg_bundled_exports["ort"]), "--repo", str(path), *env])
    assert result.exit_code == 0, result.output
    return path


def transformers_text(checkpoint, messages, max_tokens, thinking=False, tools=None) -> str:
    """Greedy `generate` of transformers on the chat-templated prompt (it reads chat_template.jinja itself)."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype="float32")
    ids = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, enable_thinking=thinking,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    new = model.generate(ids, max_new_tokens=max_tokens, do_sample=False)[0, ids.shape[1]:].tolist()
    stops = set(model.generation_config.eos_token_id)
    new = new[: next((i for i, t in enumerate(new) if t in stops), len(new))]
    return tokenizer.decode(new, skip_special_tokens=False)


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    if ensure_triton() is None:
        pytest.skip("the Triton server could not be unpacked (scripts/setup_triton.sh needs the nvidia-pytriton wheel)")
    with triton_server(repo, tmp_path_factory.mktemp("log") / "tritonserver.log") as urls:
        yield urls


def test_repository_layout_and_check(repo):
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "exaone4", "exaone4_decoder", "exaone4_stream"]
    assert (repo / "exaone4_decoder" / "1" / "model.onnx").is_file()
    for name in ("tokenizer.json", "chat_template.jinja", "generation_config.json", "exaone4/exporter/chat/tokenizer.py"):
        assert (repo / "exaone4" / "1" / name).is_file(), name
    assert "decoupled: true" in (repo / "exaone4_stream" / "config.pbtxt").read_text()
    assert CliRunner().invoke(main, ["triton", "--repo", str(repo), "--check"]).exit_code == 0


@pytest.mark.hardening("Triton", tried="repository whose chat_template.jinja, tokenizer or stop tokens were removed after `triton`",
                       expect="triton --check exit 2 naming the file")
def test_check_refuses_generation_models_without_template_tokenizer_or_stop_tokens(repo, tmp_path):
    for remove, expected in (("chat_template.jinja", "has no chat template"), ("tokenizer.json", "tokenizer.json not found")):
        broken = tmp_path / remove
        shutil.copytree(repo, broken)
        (broken / "exaone4_stream" / "1" / remove).unlink()
        result = CliRunner().invoke(main, ["triton", "--repo", str(broken), "--check"])
        assert result.exit_code == 2 and expected in result.output and "exaone4_stream" in result.output, result.output
    broken = tmp_path / "no-stops"
    shutil.copytree(repo, broken)
    version = broken / "exaone4" / "1"
    (version / "generation_config.json").write_text(json.dumps({"eos_token_id": "[|endofturn|]"}))
    result = CliRunner().invoke(main, ["triton", "--repo", str(broken), "--check"])
    assert result.exit_code == 2 and "generation_config.json: eos_token_id: must be a token id" in result.output


def test_a_repository_whose_template_was_deleted_fails_to_load_naming_the_file(repo, tmp_path):
    """The server refuses to load the generation models, and its log names the missing file."""
    if ensure_triton() is None:
        pytest.skip("the Triton server could not be unpacked (scripts/setup_triton.sh needs the nvidia-pytriton wheel)")
    broken = tmp_path / "repo"
    shutil.copytree(repo, broken)
    for name in ("exaone4", "exaone4_stream"):
        (broken / name / "1" / "chat_template.jinja").unlink()
    log = tmp_path / "tritonserver.log"
    with pytest.raises(RuntimeError, match="failed to load all models"):
        with triton_server(broken, log, timeout=90):
            pass
    for name in ("exaone4", "exaone4_stream"):
        assert f"{name}/1/chat_template.jinja: missing: the generation model needs the chat template" in log.read_text()


def test_triton_refuses_a_checkpoint_without_a_template(lg_bundled_exports, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(lg_bundled_exports["ort"], export)
    (export / "chat_template.jinja").unlink()
    result = CliRunner().invoke(main, ["triton", str(export), "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 2 and "has no chat template" in result.output and not (tmp_path / "repo").exists()


@pytest.mark.hardening("Triton", tried="repository whose config.pbtxt disagrees / does not parse", expect="triton --check exit 2 naming the file")
def test_check_names_a_config_that_disagrees_with_the_export(repo, tmp_path):
    import shutil

    broken = tmp_path / "repo"
    shutil.copytree(repo, broken)
    config = broken / "exaone4_decoder" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "logits" data_type: TYPE_FP32', 'name: "logits" data_type: TYPE_FP16'))
    result = CliRunner().invoke(main, ["triton", "--repo", str(broken), "--check"])
    assert result.exit_code == 2 and "exaone4_decoder output 'logits'" in result.output
    config.write_text("name: exaone4_decoder\nthis is not protobuf text")
    result = CliRunner().invoke(main, ["triton", "--repo", str(broken), "--check"])
    assert result.exit_code == 2 and "does not parse as a Triton ModelConfig" in result.output


def _raw(module, name: str, value: bytes):
    tensor = module.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
    return tensor


def _inputs(module, prompt: str, max_tokens: int, max_dtype=np.int32):
    text = module.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    limit = module.InferInput("max_tokens", [1], {np.int32: "INT32", np.float32: "FP32"}[max_dtype])
    limit.set_data_from_numpy(np.array([max_tokens], dtype=max_dtype))
    return [text, limit]


def _text(result) -> str:
    return result.as_numpy("text_output")[0].decode()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_greedy_generation_equals_the_reference(server, protocol):
    module, url = (http, server[0]) if protocol == "http" else (grpc, server[1])
    client = module.InferenceServerClient(url)
    for prompt in PROMPTS:
        assert _text(client.infer("exaone4", _inputs(module, prompt, 40))) == reference_text(prompt, 40)


def _messages_inputs(module, messages, max_tokens, thinking=False, tools=None):
    tensors = []
    for name, value, dtype, triton_type in (("messages", json.dumps(messages).encode(), np.object_, "BYTES"),
                                            ("max_tokens", max_tokens, np.int32, "INT32"),
                                            ("enable_thinking", thinking, np.bool_, "BOOL"),
                                            ("tools", json.dumps(tools or []).encode(), np.object_, "BYTES")):
        tensor = module.InferInput(name, [1], triton_type)
        tensor.set_data_from_numpy(np.array([value], dtype=dtype))
        tensors.append(tensor)
    return tensors if tools else tensors[:3]


@pytest.mark.parametrize("thinking", [False, True], ids=["thinking-off", "thinking-on"])
def test_greedy_text_equals_transformers_generate(server, lg_bundled, thinking):
    """The LG-layout checkpoint served: the same greedy text as transformers' generate, on conversations with tools too."""
    client = grpc.InferenceServerClient(server[1])
    conversations = [
        ([{"role": "user", "content": PROMPTS[0]}], None),
        ([{"role": "system", "content": "Answer in code."}, {"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "Hello."}, {"role": "user", "content": PROMPTS[1]}], None),
        ([{"role": "user", "content": "Weather in Seoul?"}], [WEATHER]),
    ]
    for messages, tools in conversations:
        result = client.infer("exaone4", _messages_inputs(grpc, messages, 32, thinking, tools))
        expected = transformers_text(lg_bundled, messages, 32, thinking, tools)
        assert _text(result) == expected and len(expected) > 10
        calls = json.loads(result.as_numpy("tool_calls")[0].decode())
        assert calls == parse_response(expected).tool_calls


def test_streaming_sends_each_token_as_it_is_made(server):
    responses: queue.Queue = queue.Queue()
    client = grpc.InferenceServerClient(server[1])
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer("exaone4_stream", _inputs(grpc, PROMPTS[0], 40))
        pieces = []
        expected = reference_text(PROMPTS[0], 40)
        while "".join(pieces) != expected:
            result, error = responses.get(timeout=60)
            assert error is None, error
            pieces.append(_text(result))
    finally:
        client.stop_stream()
    assert len(pieces) > 10  # one response per token, not one for the whole text


def test_eight_concurrent_requests_all_come_back_correct(server):
    expected = {prompt: reference_text(prompt, 24) for prompt in PROMPTS}

    def ask(i: int) -> tuple[str, str]:
        prompt = PROMPTS[i % 2]
        return prompt, _text(http.InferenceServerClient(server[0]).infer("exaone4", _inputs(http, prompt, 24)))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(8)))
    assert len(results) == 8 and all(text == expected[prompt] for prompt, text in results)


@pytest.mark.hardening("Triton", tried="requests: missing input, wrong dtypes, prompt too long, empty prompt, max_tokens 0 / -5 / 2^31-1", expect="an error response; the server keeps serving")
def test_bad_requests_get_errors_and_the_server_keeps_serving(server):
    client = http.InferenceServerClient(server[0])
    with pytest.raises(Exception, match="text_input"):  # missing input
        client.infer("exaone4", _inputs(http, "hi", 8)[1:])
    with pytest.raises(Exception, match="(?i)data type|datatype|FP32"):  # wrong dtype
        client.infer("exaone4", _inputs(http, "hi", 8, max_dtype=np.float32))
    with pytest.raises(Exception, match="exceeds the context of 512"):
        client.infer("exaone4", _inputs(http, "def " * 600, 8))
    with pytest.raises(Exception, match="text_input: is empty"):
        client.infer("exaone4", _inputs(http, "   ", 8))
    with pytest.raises(Exception, match="text_input: is empty"):
        client.infer("exaone4", _inputs(http, "", 8))
    with pytest.raises(Exception, match="messages: is not valid JSON"):
        client.infer("exaone4", _messages_inputs(http, [], 8)[1:2] + [_raw(http, "messages", b"[{")])
    with pytest.raises(Exception, match="messages: message 0 needs a role"):
        client.infer("exaone4", _messages_inputs(http, [{"role": "robot", "content": "hi"}], 8))
    with pytest.raises(Exception, match="tools: must hold a JSON list"):
        client.infer("exaone4", _inputs(http, "hi", 8) + [_raw(http, "tools", b"{}")])
    for limit in (0, -5):
        with pytest.raises(Exception, match=f"max_tokens: must be at least 1, got {limit}"):
            client.infer("exaone4", _inputs(http, "hi", limit))
    started = time.monotonic()  # a huge max_tokens is refused at once, not generated until the context runs out
    with pytest.raises(Exception, match="max_tokens 2147483647 exceeds the context of 512"):
        client.infer("exaone4", _inputs(http, "hi", 2**31 - 1))
    assert time.monotonic() - started < 10
    wrong_text = http.InferInput("text_input", [1], "INT32")  # a number where the prompt's bytes belong
    wrong_text.set_data_from_numpy(np.array([7], dtype=np.int32))
    with pytest.raises(Exception, match="(?i)data type|datatype|INT32"):
        client.infer("exaone4", [wrong_text, _inputs(http, "hi", 8)[1]])
    assert _text(client.infer("exaone4", _inputs(http, PROMPTS[0], 16))) == reference_text(PROMPTS[0], 16)


def test_a_random_model_in_the_12b_layout_is_served_at_parity_with_transformers(tmp_path):
    """LG's 1.2B layout (all global, null window, tied, llama3 RoPE; random weights) through export, triton and the real server."""
    from lg_layout import lg_random

    triton = ensure_triton()
    if triton is None:
        pytest.skip("the Triton server could not be unpacked (scripts/setup_triton.sh needs the nvidia-pytriton wheel)")
    checkpoint = lg_random(tmp_path / "ckpt", "1.2b")
    for args in (["export", checkpoint, "-o", tmp_path / "ort", "--target", "ort", "--quiet"],
                 ["triton", tmp_path / "ort", "--repo", tmp_path / "repo", "--python-env", triton / "env"]):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    with triton_server(tmp_path / "repo", tmp_path / "tritonserver.log") as urls:
        client = grpc.InferenceServerClient(urls[1])
        for thinking in (False, True):
            messages = [{"role": "user", "content": PROMPTS[1]}]
            expected = transformers_text(checkpoint, messages, 24, thinking)
            assert _text(client.infer("exaone4", _messages_inputs(grpc, messages, 24, thinking))) == expected
            assert len(expected) > 10
