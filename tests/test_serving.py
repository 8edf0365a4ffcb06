"""The resident engine in-process: slot pool, in-flight batching scheduler, serving loop, metrics.

Two kinds of runner: the bundled model's `--kv-cache static` export through
onnxruntime (numbers: chunked prefill and batched decode against the reference,
greedy alone == batched), and a fake runner whose next token is the last one plus
one (bookkeeping: admission, chunk budget, cancellation, errors, back-pressure),
which runs in milliseconds.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.chat import ChatTokenizer, Sampling
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.contract import INPUT_IDS, LOGITS, CacheLayout
from exaone4.exporter.errors import InputError
from exaone4.exporter.generate import generate_tokens
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import OrtRunner, TorchRunner
from exaone4.exporter.serving import (
    METRICS,
    ChatRequest,
    Client,
    EngineConfig,
    Finish,
    GenerationRequest,
    GrowingSlotPool,
    MetricsObserver,
    QueueFull,
    Scheduler,
    ServingLoop,
    SlotPool,
    TextClient,
    pool_bytes,
    pool_lengths,
)
from exaone4.exporter.session import Runner
from exaone4.exporter.tiny import TINY_DIR

VOCAB = 50
POISON = VOCAB - 1  # the fake runner's logits after this token are NaN: sampling them fails
PROMPTS = ["Show me def dumps", "Show me def quote", "Write a class for a queue", "import os", "def main():",
           "Explain the json module in one line"]


class Recorder(Client):
    """Collects tokens and the finish; optionally cancels after some tokens or fails on one."""

    def __init__(self, cancel_after: int = 0, fail_at: int = 0) -> None:
        self.tokens: list[int] = []
        self.finish: Finish | None = None
        self.error: str | None = None
        self.cancel_after, self.fail_at = cancel_after, fail_at
        self.done = threading.Event()

    def on_token(self, token: int) -> None:
        if self.fail_at and len(self.tokens) + 1 == self.fail_at:
            raise ConnectionError("client went away")
        self.tokens.append(token)

    def on_finish(self, finish: Finish, error: str | None) -> None:
        assert self.finish is None, "finished twice"
        self.finish, self.error = finish, error
        self.done.set()

    def cancelled(self) -> bool:
        return bool(self.cancel_after) and len(self.tokens) >= self.cancel_after


class CountingRunner(Runner):
    """A fake in-place model: next token = last input token + 1 (mod VOCAB), NaN logits after POISON; records call shapes."""

    def __init__(self, fail_on_call: int = -1) -> None:
        self.calls: list[tuple[int, int]] = []  # (rows, tokens per row)
        self.fail_on_call = fail_on_call

    def infer_in_place(self, feeds, caches):
        ids = feeds[INPUT_IDS]
        self.calls.append(ids.shape)
        if len(self.calls) - 1 == self.fail_on_call:
            raise RuntimeError("kernel exploded")
        logits = np.zeros((ids.shape[0], 1, VOCAB), np.float32)
        logits[np.arange(ids.shape[0]), 0, (ids[:, -1] + 1) % VOCAB] = 1.0
        logits[ids[:, -1] == POISON] = np.nan
        return {LOGITS: logits}


FAKE_LAYOUT = CacheLayout(1, 1, 2, np.dtype(np.float32))


def fake_scheduler(runner=None, **config) -> Scheduler:
    config = EngineConfig(**{"max_batch": 2, "max_context": 64, "max_queue": 4, "prefill_chunk": 8, **config})
    pool = SlotPool(runner or CountingRunner(), FAKE_LAYOUT, config.max_batch, config.max_context)
    return Scheduler(pool, config)


def drain(scheduler: Scheduler, limit: int = 1000) -> int:
    steps = 0
    while scheduler.step():
        steps += 1
        assert steps < limit
    return steps


# ----------------------------------------------------------------------------- bookkeeping (fake runner)


def test_requests_wait_for_slots_and_run_to_max_tokens_or_a_stop_token():
    scheduler = fake_scheduler()
    clients = [Recorder() for _ in range(4)]
    scheduler.submit(GenerationRequest((1, 2, 3), 5), clients[0])
    scheduler.submit(GenerationRequest((10,), 20, stop_ids=frozenset({14})), clients[1])
    scheduler.submit(GenerationRequest((20, 21), 3), clients[2])  # waits for a slot
    scheduler.submit(GenerationRequest((30,), 2), clients[3])
    scheduler.step()
    assert scheduler.active == 2 and scheduler.queued == 2
    drain(scheduler)
    assert clients[0].tokens == [4, 5, 6, 7, 8] and clients[0].finish is Finish.LENGTH
    assert clients[1].tokens == [11, 12, 13] and clients[1].finish is Finish.STOP  # the stop token is not sent
    assert clients[2].tokens == [22, 23, 24] and clients[3].tokens == [31, 32]
    assert scheduler.active == 0 and scheduler.queued == 0 and list(scheduler.pool.filled) == [0, 0]


def test_a_long_prompt_is_prefilled_in_chunks_while_the_running_streams_keep_decoding():
    runner = CountingRunner()
    scheduler = fake_scheduler(runner, max_batch=3, prefill_chunk=8)
    running = [Recorder() for _ in range(2)]
    for i, client in enumerate(running):
        scheduler.submit(GenerationRequest((i,), 30), client)
    scheduler.step()
    long = Recorder()
    scheduler.submit(GenerationRequest(tuple(range(40)), 3), long)
    before = [len(c.tokens) for c in running]
    for step in range(5):  # 40 prompt tokens, 8 a step: 5 steps, and a token for each stream every step
        runner.calls.clear()
        scheduler.step()
        assert sum(rows * tokens for rows, tokens in runner.calls if tokens > 1) <= 8
        assert [len(c.tokens) for c in running] == [n + step + 1 for n in before]
    assert long.tokens == [40, 41]  # its first token came with its last chunk, and it decoded in that step
    drain(scheduler)
    assert long.tokens == [40, 41, 42]


class TimedRunner(CountingRunner):
    """The fake model on a fake clock: a decode call takes `decode_s`, a prompt token `token_s`."""

    def __init__(self, decode_s: float, token_s: float) -> None:
        super().__init__()
        self.now, self.decode_s, self.token_s = 0.0, decode_s, token_s

    def infer_in_place(self, feeds, caches):
        rows, tokens = feeds[INPUT_IDS].shape
        self.now += self.decode_s if tokens == 1 else self.token_s * rows * tokens
        return super().infer_in_place(feeds, caches)


@pytest.mark.parametrize("stall, decode_s, chunks", [
    (2, 1 / 8, [16, 32, 32, 32]),  # 2 decode steps' time at 1/128 s a token: 32 tokens a step, after a 16-token probe
    (2, 1 / 32, [16, 16, 16, 16]),  # 8 tokens would fit: never below MIN_CHUNK
    (0, 1 / 8, [64, 64, 64, 64]),  # off: whole chunks
])
def test_while_streams_decode_a_step_prefills_what_fits_in_the_stall_budget(stall, decode_s, chunks):
    runner = TimedRunner(decode_s=decode_s, token_s=1 / 128)
    config = EngineConfig(max_batch=2, max_context=512, max_queue=2, prefill_chunk=64, prefill_stall=stall)
    scheduler = Scheduler(SlotPool(runner, FAKE_LAYOUT, 2, 512), config, clock=lambda: runner.now)
    scheduler.submit(GenerationRequest((1,), 100), Recorder())
    scheduler.step()
    scheduler.step()  # a decode step measured
    scheduler.submit(GenerationRequest(tuple(range(300)), 2), Recorder())
    prefilled = []
    for _ in chunks:
        runner.calls.clear()
        scheduler.step()
        prefilled.append(sum(rows * tokens for rows, tokens in runner.calls if tokens > 1))
    assert prefilled == chunks


def test_short_prompts_share_one_steps_budget():
    runner = CountingRunner()
    scheduler = fake_scheduler(runner, max_batch=4, prefill_chunk=8)
    clients = [Recorder() for _ in range(4)]
    for i, client in enumerate(clients):
        scheduler.submit(GenerationRequest((i, i, i), 2), client)
    scheduler.step()  # 3 + 3 fit in 8 tokens, the third prompt waits for the next step
    assert [len(c.tokens) for c in clients] == [2, 2, 0, 0]


def test_cancelled_requests_leave_and_free_their_slot():
    scheduler = fake_scheduler(max_batch=1)
    cancelled, waiting = Recorder(cancel_after=3), Recorder()
    scheduler.submit(GenerationRequest((1,), 50), cancelled)
    scheduler.submit(GenerationRequest((5,), 2), waiting)
    drain(scheduler)
    assert cancelled.finish is Finish.CANCELLED and len(cancelled.tokens) == 3
    assert waiting.tokens == [6, 7] and scheduler.active == 0


def test_one_requests_failure_leaves_the_others_undisturbed():
    scheduler = fake_scheduler(max_batch=3)
    failing, other = Recorder(fail_at=2), Recorder()
    bad_sampling = Recorder()
    scheduler.submit(GenerationRequest((1,), 5), failing)
    scheduler.submit(GenerationRequest((1,), 5), other)
    scheduler.submit(GenerationRequest((POISON,), 5, Sampling(temperature=1.0)), bad_sampling)
    drain(scheduler)
    assert failing.finish is Finish.ERROR and "client went away" in failing.error
    assert bad_sampling.finish is Finish.ERROR and "sampling failed" in bad_sampling.error
    assert other.tokens == [2, 3, 4, 5, 6] and other.finish is Finish.LENGTH and scheduler.active == 0


def test_a_failed_model_call_fails_its_requests_and_the_engine_carries_on():
    runner = CountingRunner(fail_on_call=2)  # call 0, 1: the two prefills; call 2: their decode
    scheduler = fake_scheduler(runner)
    first, second, later = Recorder(), Recorder(), Recorder()
    scheduler.submit(GenerationRequest((1,), 5), first)
    scheduler.submit(GenerationRequest((2,), 5), second)
    drain(scheduler)
    assert first.finish is second.finish is Finish.ERROR and "decode failed: kernel exploded" in first.error
    scheduler.submit(GenerationRequest((3,), 2), later)
    drain(scheduler)
    assert later.tokens == [4, 5] and scheduler.active == 0


@pytest.mark.hardening("serving", tried="engine requests: empty prompt, max_tokens 0, prompt plus max_tokens past the slots, "
                       "a full queue", expect="InputError / QueueFull at submit; nothing queued")
def test_bad_requests_and_a_full_queue_are_refused_at_submit():
    scheduler = fake_scheduler(max_queue=2)  # two slots, free until the next step: four requests fit, the fifth is refused
    for request, message in ((GenerationRequest((), 4), "prompt: is empty"),
                             (GenerationRequest((1,), 0), "max_tokens: must be at least 1, got 0"),
                             (GenerationRequest((1,) * 60, 5), "prompt of 60 tokens plus max_tokens 5 exceeds the context of 64")):
        with pytest.raises(InputError, match=message):
            scheduler.submit(request, Recorder())
    for _ in range(4):
        scheduler.submit(GenerationRequest((1,), 20), Recorder())
    with pytest.raises(QueueFull, match="queue is full"):
        scheduler.submit(GenerationRequest((1,), 2), Recorder())
    scheduler.step()  # two take the slots, two wait: the queue is full again
    assert scheduler.queued == 2 and scheduler.active == 2
    with pytest.raises(QueueFull, match=r"queue is full \(2 requests waiting for 2 slots\)"):
        scheduler.submit(GenerationRequest((1,), 2), Recorder())


def test_a_ring_pool_keeps_window_slots_and_bounds_the_chunk():
    """A sliding layer of a ring export keeps window + 255 slots; a chunk past 256 tokens is refused (not exact in a ring)."""
    layout = CacheLayout(2, 1, 2, np.dtype(np.float32), rings=(4, 0))
    pool = SlotPool(CountingRunner(), layout, 2, 1024)
    assert pool.caches["past_key_values.0.key"].shape == (2, 1, 259, 2) and pool.caches["past_key_values.1.value"].shape[2] == 1024
    assert pool.nbytes == 2 * (1024 + 259) * 2 * 2 * 4
    with pytest.raises(InputError, match="prefill_chunk: 300 tokens a call exceeds the 256 this cache takes"):
        Scheduler(pool, EngineConfig(max_batch=2, max_context=1024, prefill_chunk=300))


def test_a_context_shorter_than_the_ring_keeps_full_rows_and_any_chunk():
    """A ring of max_context slots never wraps: the pool keeps max_context positions and takes whole-context chunks."""
    layout = CacheLayout(2, 1, 2, np.dtype(np.float32), rings=(4, 0))
    pool = SlotPool(CountingRunner(), layout, 2, 200)
    assert pool_lengths(layout, 200) == [200, 200] and pool.max_chunk == 200
    assert pool.nbytes == pool_bytes(layout, 2, 200) == 2 * 400 * 2 * 2 * 4
    Scheduler(pool, EngineConfig(max_batch=2, max_context=200, prefill_chunk=256))  # no chunk can exceed the context anyway


def test_engine_config_knobs_are_checked():
    assert EngineConfig.from_parameters({"max_batch": "16"}, "cfg").max_batch == 16
    with pytest.raises(InputError, match="cfg: parameter max_batch: must be an integer, got 'x'"):
        EngineConfig.from_parameters({"max_batch": "x"}, "cfg")
    with pytest.raises(InputError, match="cfg: parameter prefill_chunk: must be an integer of at least 1, got 0"):
        EngineConfig.from_parameters({"prefill_chunk": "0"}, "cfg")
    assert EngineConfig.from_parameters(EngineConfig(max_queue=3).parameters(), "cfg") == EngineConfig(max_queue=3)


def test_the_loop_serves_requests_submitted_from_other_threads_and_fails_the_rest_when_stopped():
    scheduler = fake_scheduler(max_batch=2, max_queue=16)
    loop = ServingLoop(scheduler)
    loop.start()
    clients = [Recorder() for _ in range(8)]
    threads = [threading.Thread(target=scheduler.submit, args=(GenerationRequest((i,), 6), c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for client in clients:
        assert client.done.wait(10)
    assert all(c.tokens == [(i + k) % VOCAB for k in range(1, 7)] for i, c in enumerate(clients))
    endless = Recorder()
    scheduler.submit(GenerationRequest((1,), 60), endless)
    loop.stop("unloading")
    assert endless.finish in (Finish.ERROR, Finish.LENGTH) and loop.error is None


def test_metrics_follow_the_scheduler():
    recorded: dict[tuple, list] = {}

    class Metric:
        def __init__(self, key):
            self.key = key

        def increment(self, value):
            recorded.setdefault(self.key, []).append(("+", value))

        def set(self, value):
            recorded.setdefault(self.key, []).append(("=", value))

        def observe(self, value):
            recorded.setdefault(self.key, []).append(("o", value))

    ticks = iter(range(1000))
    config = EngineConfig(max_batch=2, max_context=64, max_queue=4, prefill_chunk=8)
    observer = MetricsObserver(lambda spec, labels: Metric((spec.name, tuple(sorted(labels.items())))), {"model": "m"})
    scheduler = Scheduler(SlotPool(CountingRunner(), FAKE_LAYOUT, 2, 64), config, observer, clock=lambda: float(next(ticks)))
    scheduler.submit(GenerationRequest((1,), 3), Recorder())
    scheduler.submit(GenerationRequest((1,), 50), Recorder(cancel_after=2))
    drain(scheduler)
    names = {spec.name for spec in METRICS}
    assert {key[0] for key in recorded} == names
    tokens = recorded[("exaone4_generated_tokens_total", (("model", "m"),))]
    assert sum(v for _, v in tokens) == 5
    ttft = recorded[("exaone4_time_to_first_token_seconds", (("model", "m"),))]
    assert len(ttft) == 2 and all(v > 0 for _, v in ttft)
    assert len(recorded[("exaone4_inter_token_latency_seconds", (("model", "m"),))]) == 3
    assert recorded[("exaone4_requests_finished_total", (("finish", "cancelled"), ("model", "m")))] == [("+", 1)]
    assert recorded[("exaone4_active_slots", (("model", "m"),))][-1] == ("=", 0)


# ----------------------------------------------------------------------------- numbers (the static export)


@pytest.fixture(scope="module")
def static_tiny(tiny_exports, tmp_path_factory):
    from exaone4.exporter.export import lower_export

    path = tmp_path_factory.mktemp("serving") / "static"
    lower_export(tiny_exports["canonical"], path, "ort", kv_cache="static", max_context=256)
    return ExportDir.open(path)


@pytest.fixture(scope="module")
def chat():
    return ChatTokenizer.open(TINY_DIR)


@pytest.fixture(scope="module")
def reference():
    return TorchRunner(load_reference_model(Checkpoint.open(TINY_DIR)))


def serve(export: ExportDir, requests: list[GenerationRequest], max_batch: int, prefill_chunk: int = 16,
          max_context: int = 256) -> list[list[int]]:
    """Run requests through a fresh engine, all submitted at once; their tokens."""
    config = EngineConfig(max_batch=max_batch, max_context=max_context, max_queue=len(requests), prefill_chunk=prefill_chunk,
                          prefill_stall=0)  # chunk boundaries the prompt's alone, so alone and batched compute alike
    with OrtRunner(export.model_path) as runner:
        scheduler = Scheduler(SlotPool(runner, export.cache_layout(), max_batch, max_context), config)
        clients = [Recorder() for _ in requests]
        for request, client in zip(requests, clients):
            scheduler.submit(request, client)
        drain(scheduler)
    assert all(c.finish in (Finish.STOP, Finish.LENGTH) for c in clients)
    return [c.tokens for c in clients]


def first_divergence(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def top2_gap(reference: TorchRunner, layout, ids: list[int]) -> float:
    logits = reference.new_session(layout).prefill(np.array([ids]))[0, -1]
    top = np.sort(logits)[-2:]
    return float(top[1] - top[0])


def test_greedy_tokens_alone_equal_batched_and_the_reference(static_tiny, chat, reference):
    """Six requests through four slots (two wait for a slot, prompts chunked by 16) against each run alone."""
    prompts = [chat.prompt_ids([{"role": "user", "content": p}]) for p in PROMPTS]
    requests = [GenerationRequest(tuple(ids), 24, stop_ids=chat.stop_ids) for ids in prompts]
    batched = serve(static_tiny, requests, max_batch=4)
    alone = [serve(static_tiny, [request], max_batch=1)[0] for request in requests]
    layout = static_tiny.cache_layout()
    for ids, one, many in zip(prompts, alone, batched):
        where = first_divergence(one, many)
        if where is not None:  # allowed only at a near-tie of the reference's top two logits
            gap = top2_gap(reference, layout, ids + one[:where])
            assert gap < 1e-3, f"alone and batched differ at token {where}, top-2 logit gap {gap:.2e}"
        expected = [t for t in generate_tokens(reference.new_session(layout), ids, 24, chat.stop_ids) if t not in chat.stop_ids]
        assert one == expected
    assert sum(map(len, batched)) > 60


def test_rings_wrap_in_the_pool_at_the_reference_logits(tiny_exports, chat, reference, tmp_path):
    """At 512 positions the sliding layers keep rings of 16 + 255 slots. A 400-token prompt appended in
    chunks of 64 wraps them; its logits after every chunk and over batched decode steps beside a short
    slot equal the reference's at 1e-4, and the scheduler's greedy tokens are the reference's."""
    from exaone4.exporter.export import lower_export

    lower_export(tiny_exports["canonical"], tmp_path / "static", "ort", kv_cache="static", max_context=512)
    export = ExportDir.open(tmp_path / "static")
    layout = export.cache_layout()
    lengths = pool_lengths(layout, 512)
    assert sorted(set(lengths)) == [271, 512] and lengths.count(271) == 6
    long = chat.prompt_ids([{"role": "user", "content": " ".join(PROMPTS * 8)}])
    short = chat.prompt_ids([{"role": "user", "content": PROMPTS[1]}])
    assert 300 < len(long) < 480, len(long)

    def expected(ids: list[int]) -> np.ndarray:
        return reference.new_session(layout).prefill(np.array([ids]))[0, -1]

    with OrtRunner(export.model_path) as runner:
        pool = SlotPool(runner, layout, 2, 512)
        short_slot, long_slot = pool.acquire(), pool.acquire()
        pool.append(short_slot, np.array(short))
        for end in range(64, len(long) + 64, 64):
            got = pool.append(long_slot, np.array(long[end - 64:end]))
            np.testing.assert_allclose(got, expected(long[:end]), atol=1e-4, err_msg=f"after {min(end, len(long))} tokens")
        seqs = [list(short), list(long)]
        for step in range(3):
            tokens = [3 + step, 7 + step]
            logits = pool.decode([short_slot, long_slot], tokens)
            for row, (seq, token) in enumerate(zip(seqs, tokens)):
                seq.append(token)
                np.testing.assert_allclose(logits[row], expected(seq), atol=1e-4, err_msg=f"decode step {step}, row {row}")

    requests = [GenerationRequest(tuple(ids), 16, stop_ids=chat.stop_ids) for ids in (long, short)]
    for ids, got in zip((long, short), serve(export, requests, max_batch=2, prefill_chunk=64, max_context=512)):
        assert got == [t for t in generate_tokens(reference.new_session(layout), ids, 16, chat.stop_ids) if t not in chat.stop_ids]


def test_sampled_requests_repeat_with_their_seed_alone_or_batched(static_tiny, chat):
    ids = tuple(chat.prompt_ids([{"role": "user", "content": PROMPTS[0]}]))
    sampled = [GenerationRequest(ids, 16, Sampling(temperature=0.9, top_k=40, seed=seed)) for seed in (1, 2, 1)]
    together = serve(static_tiny, sampled, max_batch=3)
    assert together[0] == together[2] != together[1]
    assert serve(static_tiny, [sampled[0]], max_batch=1)[0] == together[0]


def test_text_client_streams_text_and_tool_calls(chat):
    class Collect(TextClient):
        def __init__(self):
            super().__init__(chat, tools_given=True)
            self.pieces, self.calls = [], None

        def send_text(self, piece):
            self.pieces.append(piece)

        def send_end(self, tool_calls):
            self.calls = tool_calls

    client = Collect()
    for token in chat.encode('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'):
        client.on_token(token)
    client.on_finish(Finish.STOP, None)
    assert client.calls == [{"name": "f", "arguments": {"x": 1}}] and len(client.pieces) > 3


def test_chat_request_reads_triton_inputs():
    inputs = {"text_input": b"hello", "max_tokens": 7, "temperature": 0.5, "random_seed": 3}
    request = ChatRequest.read(inputs.get)
    assert request.max_tokens == 7 and request.sampling == Sampling(temperature=0.5, seed=3)
    assert request.messages == [{"role": "user", "content": "hello"}] and request.tools is None
    with pytest.raises(InputError, match="text_input: give text_input or messages, not both"):
        ChatRequest.read({"text_input": b"hi", "messages": b"[]"}.get)
    with pytest.raises(InputError, match="max_tokens: must be at least 1, got -5"):
        ChatRequest.read({"text_input": b"hi", "max_tokens": -5}.get)


def test_the_same_scheduler_over_a_growing_cache_runner(tiny_exports, chat, reference):
    """GrowingSlotPool: the full-cache ort export (as a TensorRT engine would be driven) gives the reference's greedy tokens."""
    export = ExportDir.open(tiny_exports["ort"])
    prompts = [chat.prompt_ids([{"role": "user", "content": p}]) for p in PROMPTS[:4]]
    config = EngineConfig(max_batch=3, max_context=256, max_queue=4, prefill_chunk=256, prefill_stall=0)  # whole prompts, as engine profiles need
    with OrtRunner(export.model_path) as runner:
        scheduler = Scheduler(GrowingSlotPool(runner, export.cache_layout(), 3, 256), config)
        clients = [Recorder() for _ in prompts]
        for ids, client in zip(prompts, clients):
            scheduler.submit(GenerationRequest(tuple(ids), 20, stop_ids=chat.stop_ids), client)
        drain(scheduler)
    layout = export.cache_layout()
    for ids, client in zip(prompts, clients):
        expected = [t for t in generate_tokens(reference.new_session(layout), ids, 20, chat.stop_ids) if t not in chat.stop_ids]
        assert client.tokens == expected
