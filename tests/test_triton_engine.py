"""The resident engine served by a real Triton server: parity, streaming, batching, cancellation, back-pressure, metrics.

The repository is written from the LG-layout bundled model exported with
`--kv-cache static`, with 4 slots of 320 positions (rings of 271 on the sliding layers), a queue of 8 and prefill
chunks of 16 tokens, so admission, waiting, chunking and refusals all happen
with a handful of requests. Every text is compared with the reference model's
greedy text through the chat path (tests/test_triton.py::reference_text); where a
batched text differs from it, the test names the first diverging token and the
reference's top-2 logit gap there, which must be a near-tie.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import random
import re
import time
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner

from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.generate import generate_tokens
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, TorchRunner
from exaone4.exporter.serving.metrics import ACTIVE, FINISHED, ITL, QUEUED, TOKENS, TTFT
from exaone4.exporter.tiny import TINY_DIR

from triton_server import ensure_triton, group_rss_bytes, triton_server

http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed")
PROMPTS = ["Show me def dumps", "Show me def quote", "Write a class for a queue", "import os", "def main():",
           "Explain the json module in one line", "class Stack:", "Sort a list"]
SOAK_REQUESTS, SOAK_CLIENTS = (int(n) for n in os.environ.get("EXAONE4_SOAK", "40x8").split("x"))  # 200x16: the soak
SLOTS, QUEUE, CONTEXT = 4, max(8, SOAK_CLIENTS), 320  # 320 > the rings' 271 slots: sliding layers keep rings
LONGEST = 48  # reference tokens computed per prompt; shorter requests compare with a prefix


class Reference:
    """The reference model's greedy tokens per prompt, computed once, and its logits for the near-tie check."""

    def __init__(self) -> None:
        self.chat = ChatTokenizer.open(TINY_DIR)
        self.runner = TorchRunner(load_reference_model(Checkpoint.open(TINY_DIR)))
        self.layout = CacheLayout.of(self.runner.model.config)
        self.tokens: dict[str, list[int]] = {}

    def ids(self, prompt: str) -> list[int]:
        return self.chat.prompt_ids([{"role": "user", "content": prompt}])

    def greedy(self, prompt: str, max_tokens: int) -> list[int]:
        if prompt not in self.tokens:
            produced = generate_tokens(self.runner.new_session(self.layout), self.ids(prompt), LONGEST, self.chat.stop_ids)
            self.tokens[prompt] = list(produced)
        tokens = self.tokens[prompt][:max_tokens]
        return tokens[: next((i for i, t in enumerate(tokens) if t in self.chat.stop_ids), len(tokens))]

    def text(self, prompt: str, max_tokens: int) -> str:
        return self.chat.decode(self.greedy(prompt, max_tokens))

    def check(self, prompt: str, max_tokens: int, got: str) -> None:
        """got == the greedy text, or differs first at a near-tie of the reference's top-2 logits."""
        tokens = self.greedy(prompt, max_tokens)
        if got == self.chat.decode(tokens):
            return
        where = next(i for i in range(len(tokens) + 1) if not got.startswith(self.chat.decode(tokens[: i + 1])))
        logits = self.runner.new_session(self.layout).prefill(np.array([self.ids(prompt) + tokens[:where]]))[0, -1]
        top = np.sort(logits)[-2:]
        gap = float(top[1] - top[0])
        assert gap < 1e-3, f"{prompt!r}: differs from the reference at token {where}, top-2 logit gap {gap:.2e} (not a tie)"


@pytest.fixture(scope="module")
def reference():
    return Reference()


@pytest.fixture(scope="module")
def engine_repo(lg_bundled_exports, tmp_path_factory):
    from exaone4.exporter.export import lower_export

    triton = ensure_triton()
    if triton is None:
        pytest.skip("the Triton server could not be unpacked (scripts/setup_triton.sh needs the nvidia-pytriton wheel)")
    root = tmp_path_factory.mktemp("engine")
    lower_export(lg_bundled_exports["canonical"], root / "static", "ort", kv_cache="static", max_context=CONTEXT)
    result = CliRunner().invoke(main, ["triton", str(root / "static"), "--repo", str(root / "repo"), "--python-env",
                                       str(triton / "env"), "--max-batch", str(SLOTS), "--max-queue", str(QUEUE),
                                       "--prefill-chunk", "16", "--threads", "1"])
    assert result.exit_code == 0, result.output
    # 8 layers x 512 B a position; 2 global layers keep 320 positions, 6 sliding ones rings of 16 + 255 slots
    assert f"KV cache: {SLOTS} slots x 1.11 MiB ({CONTEXT} positions; 6 sliding layers keep rings of 271) = 0.004 GiB" in result.output, \
        result.output
    return root / "repo"


@pytest.fixture(scope="module")
def server(engine_repo, tmp_path_factory):
    with triton_server(engine_repo, tmp_path_factory.mktemp("log") / "tritonserver.log") as urls:
        yield urls


def _inputs(module, prompt: str, max_tokens: int, **extra):
    tensors = []
    for name, value, triton_type, dtype in (("text_input", prompt.encode(), "BYTES", np.object_),
                                            ("max_tokens", max_tokens, "INT32", np.int32),
                                            *((k, v, t, d) for k, (v, t, d) in extra.items())):
        tensor = module.InferInput(name, [1], triton_type)
        tensor.set_data_from_numpy(np.array([value], dtype=dtype))
        tensors.append(tensor)
    return tensors


def _ask(server, prompt: str, max_tokens: int) -> str:
    result = http.InferenceServerClient(server.http).infer("exaone4", _inputs(http, prompt, max_tokens))
    return result.as_numpy("text_output")[0].decode()


class Stream:
    """One gRPC streaming connection to exaone4_stream; pieces of text (or an error) per request id."""

    def __init__(self, server) -> None:
        self.client = grpc.InferenceServerClient(server.grpc)
        self.events: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.events.put((result, error)))

    def send(self, prompt: str, max_tokens: int, request_id: str = "") -> None:
        self.client.async_stream_infer("exaone4_stream", _inputs(grpc, prompt, max_tokens), request_id=request_id,
                                       enable_empty_final_response=True)

    def collect(self, count: int, timeout: float = 60) -> dict[str, list]:
        """Until `count` requests have ended: {request id: [pieces...]}, and {"error-N": message} for errors.

        A stream's error does not say which request it ended, so errors are counted, not named.
        """
        out: dict[str, list] = {}
        ended = 0
        while ended < count:
            result, error = self.events.get(timeout=timeout)
            if error is not None:
                out[f"error-{ended}"] = str(error)
                ended += 1
                continue
            response = result.get_response()
            pieces = out.setdefault(response.id, [])
            if result.as_numpy("text_output") is not None:
                pieces.append(result.as_numpy("text_output")[0].decode())
            if response.parameters["triton_final_response"].bool_param:
                ended += 1
        return out

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)


def metrics(server) -> dict[str, float]:
    """{metric line name with labels: value} from the metrics endpoint, exaone4_* only."""
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=10) as response:
        text = response.read().decode()
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("exaone4_"))
    return {name: float(value) for name, value in lines}


def metric(server, spec, **labels) -> float:
    total = 0.0
    for name, value in metrics(server).items():
        if name.split("{")[0] == spec and all(f'{k}="{v}"' in name for k, v in labels.items()):
            total += value
    return total


def wait_idle(server, timeout: float = 30) -> None:
    """Until no slot is in use and nothing waits (the engine publishes its gauges every step)."""
    deadline = time.monotonic() + timeout
    while metric(server, ACTIVE.name) or metric(server, QUEUED.name):
        assert time.monotonic() < deadline, f"slots still in use: {metrics(server)}"
        time.sleep(0.2)


def test_the_engine_repository_checks_and_holds_no_decoder(engine_repo):
    assert sorted(p.name for p in engine_repo.iterdir()) == ["README.md", "exaone4", "exaone4_stream"]
    config = (engine_repo / "exaone4_stream" / "config.pbtxt").read_text()
    assert "decoupled: true" in config and 'key: "max_batch", value: { string_value: "4" }' in config
    assert "decoupled" not in (engine_repo / "exaone4" / "config.pbtxt").read_text()
    assert CliRunner().invoke(main, ["triton", "--repo", str(engine_repo), "--check"]).exit_code == 0


def test_greedy_text_alone_equals_batched_and_the_reference(server, reference):
    """Each prompt alone, then twelve at once (four slots, eight waiting): the reference's greedy text every time."""
    for prompt in PROMPTS[:3]:
        reference.check(prompt, 40, _ask(server, prompt, 40))
    jobs = [(PROMPTS[i % len(PROMPTS)], 24 + 2 * i) for i in range(SLOTS + QUEUE)]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        texts = list(pool.map(lambda job: _ask(server, *job), jobs))
    for (prompt, max_tokens), text in zip(jobs, texts):
        reference.check(prompt, max_tokens, text)
    wait_idle(server)


def test_streaming_and_plain_requests_batch_together(server, reference):
    stream = Stream(server)
    try:
        for i, prompt in enumerate(PROMPTS[:3]):
            stream.send(prompt, 40, request_id=f"s{i}")
        plain = concurrent.futures.ThreadPoolExecutor(2).map(lambda p: _ask(server, p, 30), PROMPTS[3:5])
        streamed = stream.collect(3)
    finally:
        stream.close()
    for i, prompt in enumerate(PROMPTS[:3]):
        assert isinstance(streamed[f"s{i}"], list) and len(streamed[f"s{i}"]) > 10  # a response per piece of text
        reference.check(prompt, 40, "".join(streamed[f"s{i}"]))
    for prompt, text in zip(PROMPTS[3:5], plain):
        reference.check(prompt, 30, text)


def test_a_cancelled_stream_frees_its_slot(server, reference):
    cancelled = metric(server, FINISHED.name, finish="cancelled")
    stream = Stream(server)
    stream.send(PROMPTS[0], 200, request_id="long")
    for _ in range(3):
        result, error = stream.events.get(timeout=30)
        assert error is None
    stream.close(cancel=True)
    wait_idle(server)
    assert metric(server, FINISHED.name, finish="cancelled") == cancelled + 1
    reference.check(PROMPTS[1], 20, _ask(server, PROMPTS[1], 20))


@pytest.mark.hardening("Triton", tried="the resident engine with every slot busy and its queue full: more streaming requests",
                       expect="each extra request refused at once saying the queue is full; the others finish")
def test_a_full_queue_refuses_at_once_and_the_rest_finish(server):
    stream = Stream(server)
    try:
        for i in range(SLOTS + QUEUE + 3):  # 4 run, 8 wait, 3 are refused
            stream.send(PROMPTS[i % len(PROMPTS)], 120 if i < SLOTS else 4, request_id=f"r{i}")
        ended = stream.collect(SLOTS + QUEUE + 3, timeout=120)
    finally:
        stream.close()
    refused = sorted(k for k, v in ended.items() if isinstance(v, str))
    assert len(refused) == 3 and all(f"queue is full ({QUEUE} requests waiting for {SLOTS} slots)" in ended[k] for k in refused), ended
    assert sum(isinstance(v, list) and len(v) > 0 for v in ended.values()) == SLOTS + QUEUE
    wait_idle(server)


@pytest.mark.hardening("Triton", tried="resident engine: missing input, wrong dtype, prompt past the context, empty prompt, "
                       "max_tokens 0, bad messages JSON, on both models while a stream runs", expect="an error response each; "
                       "the running stream's text is unchanged")
def test_malformed_requests_are_refused_without_disturbing_a_running_stream(server, reference):
    stream = Stream(server)
    stream.send(PROMPTS[0], 40, request_id="undisturbed")
    client = http.InferenceServerClient(server.http)
    for make, message in (
        (lambda m: _inputs(m, "hi", 8)[1:], "text_input: is empty"),  # no prompt at all
        (lambda m: _inputs(m, "def " * 500, 8), f"exceeds the context of {CONTEXT}"),
        (lambda m: _inputs(m, "   ", 8), "text_input: is empty"),
        (lambda m: _inputs(m, "hi", 0), "max_tokens: must be at least 1, got 0"),
        (lambda m: _inputs(m, "hi", 8, messages=(b"[{", "BYTES", np.object_))[1:], "messages: is not valid JSON"),
    ):
        with pytest.raises(Exception, match=re.escape(message)):
            client.infer("exaone4", make(http))
        assert message in _stream_error(server, make(grpc))
    wrong = http.InferInput("max_tokens", [1], "FP32")
    wrong.set_data_from_numpy(np.array([8], np.float32))
    with pytest.raises(Exception, match="(?i)data type|datatype|FP32"):
        client.infer("exaone4", [_inputs(http, "hi", 8)[0], wrong])
    pieces = stream.collect(1)["undisturbed"]
    stream.close()
    reference.check(PROMPTS[0], 40, "".join(pieces))


def _stream_error(server, inputs) -> str:
    """The error message a gRPC stream to exaone4_stream gets for these inputs ("" when none)."""
    stream = Stream(server)
    try:
        stream.client.async_stream_infer("exaone4_stream", inputs, request_id="bad")
        ended = stream.collect(1, timeout=30)
    finally:
        stream.close()
    return ended.get("error-0", "")


def test_metrics_count_tokens_and_latencies(server):
    before = metric(server, TOKENS.name)
    _ask(server, PROMPTS[2], 16)
    time.sleep(0.5)
    assert metric(server, TOKENS.name) >= before + 1
    names = {name.split("{")[0] for name in metrics(server)}
    assert {ACTIVE.name, QUEUED.name, TOKENS.name, FINISHED.name + "", TTFT.name + "_count", ITL.name + "_bucket"} <= names
    assert metric(server, TTFT.name + "_count") >= 1 and metric(server, ITL.name + "_count") >= 1
    wait_idle(server)


def test_soak_with_cancellations_leaks_no_slot_and_no_memory(server, reference):
    """40 streaming requests from 8 clients (EXAONE4_SOAK=200x16 for the issue's full soak), random lengths, a fifth
    cancelled mid-stream: completed texts are the greedy ones, every slot is free afterwards and the server's memory
    (all its processes) has not grown by more than 32 MiB."""
    rss_before = group_rss_bytes(server.pid)
    rng = random.Random(7)
    jobs = [(PROMPTS[rng.randrange(len(PROMPTS))], rng.randrange(4, LONGEST), rng.random() < 0.2) for _ in range(SOAK_REQUESTS)]

    def run(job):
        prompt, max_tokens, cancel = job
        stream = Stream(server)
        try:
            stream.send(prompt, max_tokens, request_id="soak")
            if cancel:
                stream.events.get(timeout=60)
                stream.close(cancel=True)
                return None
            return "".join(stream.collect(1, timeout=120)["soak"])
        finally:
            if not cancel:
                stream.close()

    with concurrent.futures.ThreadPoolExecutor(SOAK_CLIENTS) as pool:
        texts = list(pool.map(run, jobs))
    for (prompt, max_tokens, cancel), text in zip(jobs, texts):
        if not cancel:
            reference.check(prompt, max_tokens, text)
    assert sum(cancel for *_, cancel in jobs) >= SOAK_REQUESTS // 10
    wait_idle(server)
    grown = group_rss_bytes(server.pid) - rss_before
    print(f"soak: {SOAK_REQUESTS} requests from {SOAK_CLIENTS} clients, {sum(c for *_, c in jobs)} cancelled, "
          f"server memory {rss_before / 2**20:.0f} MiB before, grew {grown / 2**20:+.1f} MiB")
    assert rss_before > 0 and grown < 32 << 20, f"server memory grew by {grown / 2**20:.1f} MiB over the soak"
