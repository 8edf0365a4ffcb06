"""Triton deployment: the generated repository validates, and a real server serves it.

The server is the real `tritonserver` binary with the Python backend (unpacked
from the nvidia-pytriton wheel by scripts/setup_triton.sh), started on loopback
ports with the python-ort repository of the bundled model, and stopped by its pid
whatever happens.
"""

from __future__ import annotations

import concurrent.futures
import queue
import time

import numpy as np
import pytest
from click.testing import CliRunner

from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.generate import generate_tokens
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, TorchRunner
from exaone4.exporter.tiny import TINY_DIR

from triton_server import ensure_triton, triton_server

http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed")
PROMPTS = ["Show me def dumps", "Show me def quote"]


def reference_text(prompt: str, max_tokens: int) -> str:
    """Greedy generation with the reference model, as the Triton model does it."""
    tokenizer = ChatTokenizer.open(TINY_DIR)
    model = load_reference_model(Checkpoint.open(TINY_DIR))
    ids = tokenizer.encode(tokenizer.render([{"role": "user", "content": prompt}]))
    stop = {2}
    tokens = [t for t in generate_tokens(KVCacheSession(TorchRunner(model), CacheLayout.of(model.config)), ids, max_tokens, stop)
              if t not in stop]
    return tokenizer.decode(tokens, skip_special_tokens=True)


@pytest.fixture(scope="module")
def repo(tiny_exports, tmp_path_factory):
    triton = ensure_triton()
    path = tmp_path_factory.mktemp("triton") / "repo"
    env = ["--python-env", str(triton / "env")] if triton else []
    result = CliRunner().invoke(main, ["triton", str(tiny_exports["ort"]), "--repo", str(path), *env])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    if ensure_triton() is None:
        pytest.skip("the Triton server could not be unpacked (scripts/setup_triton.sh needs the nvidia-pytriton wheel)")
    with triton_server(repo, tmp_path_factory.mktemp("log") / "tritonserver.log") as urls:
        yield urls


def test_repository_layout_and_check(repo):
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "exaone4", "exaone4_decoder", "exaone4_stream"]
    assert (repo / "exaone4_decoder" / "1" / "model.onnx").is_file()
    assert (repo / "exaone4" / "1" / "tokenizer.json").is_file()
    assert "decoupled: true" in (repo / "exaone4_stream" / "config.pbtxt").read_text()
    assert CliRunner().invoke(main, ["triton", "--repo", str(repo), "--check"]).exit_code == 0


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
    with pytest.raises(Exception, match="text_input is empty"):
        client.infer("exaone4", _inputs(http, "   ", 8))
    with pytest.raises(Exception, match="text_input is empty"):
        client.infer("exaone4", _inputs(http, "", 8))
    for limit in (0, -5):
        with pytest.raises(Exception, match=f"max_tokens must be at least 1, got {limit}"):
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
