"""The in-place KV cache (`--kv-cache static`): one buffer per layer, written where it is, at parity.

The pass (graphs/lower_ort_static.py) is checked on one node against the custom
op's reference body; whole exports against the reference model through every
parity scenario (a left-padded batch becomes right-aligned rows of different
lengths, the long scenario fills the buffer), on the bundled hybrid model and an
all-global one; onnxruntime-genai generates with the buffer shared.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.cli import main
from exaone4.exporter.export import lower_export
from exaone4.exporter.generate import generate_tokens
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import OrtRunner, TorchRunner
from exaone4.exporter.session import StaticKVCacheSession
from exaone4.exporter.tiny import TINY_DIR
from exaone4.graphs.lower_ort_static import lower_ort_static

from lg_layout import lg_random
from test_interop import genai_greedy
from test_trt_plugin import HEADS, KV, D, feeds, one_node_model

MAX_CONTEXT = 32


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("window, rope, seq, past", [(4, 1, 5, 0), (4, 1, 1, 9), (0, 0, 6, 0), (0, 1, 1, 7)],
                         ids=["sliding-prefill", "sliding-decode", "global-prefill", "global-rope-decode"])
def test_one_node_writes_the_shared_buffer_and_matches_the_reference(window, rope, seq, past):
    """One exaone4::Attention node lowered, run with past and present bound to one buffer, against its ONNX body."""
    fields = dict(num_heads=HEADS, kv_num_heads=KV, head_dim=D, window=window, rope=rope, scale=D**-0.5)
    reference_model = one_node_model(fields)
    inputs = feeds(batch=2, seq=seq, past=past, padding=0, seed=window + seq + past)
    expected = ort.InferenceSession(reference_model, providers=["CPUExecutionProvider"]).run(None, inputs)
    model = ir.from_proto(onnx.load_from_string(reference_model))
    counts = lower_ort_static(model)
    assert (counts["group_query_attention"], counts["ring_caches"]) == ((0, 1) if window else (1, 0))
    assert [n.op_type for n in model.graph].count("ScatterND" if window else "GroupQueryAttention") == (2 if window else 1)
    output, buffers = run_in_place(model, inputs, MAX_CONTEXT, past)
    np.testing.assert_allclose(output, expected[0], atol=1e-5)
    for kind, reference in (("past_key", expected[1]), ("past_value", expected[2])):
        np.testing.assert_allclose(buffers[kind][:, :, : past + seq], reference, atol=1e-6)  # written in place


def run_in_place(model: ir.Model, inputs: dict, slots: int, past: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run a lowered one-node model with past and present bound to one buffer of `slots` per kind, position p in
    slot p mod slots (a ring when slots < past + seq; a plain buffer otherwise); returns (output, buffers)."""
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    buffers, values = {}, {}
    binding = session.io_binding()
    for name, value in inputs.items():
        if name in ("past_key", "past_value"):
            buffers[name] = np.zeros((value.shape[0], KV, slots, D), np.float32)
            kept = np.arange(max(0, past - slots), past)
            buffers[name][:, :, kept % slots] = value[:, :, kept]
            values[name] = ort.OrtValue.ortvalue_from_numpy(buffers[name])
            binding.bind_ortvalue_input(name, values[name])
        else:
            binding.bind_cpu_input(name, value)
    binding.bind_output("output")
    binding.bind_ortvalue_output("present_key", values["past_key"])
    binding.bind_ortvalue_output("present_value", values["past_value"])
    session.run_with_iobinding(binding)
    # copies: the numpy views die with the session and the binding when this returns
    return binding.get_outputs()[0].numpy().copy(), {name: value.numpy().copy() for name, value in values.items()}


@pytest.mark.parametrize("seq, past", [(1, 9), (1, 23), (3, 11), (6, 0)], ids=["decode", "decode-wrapped-twice", "chunk", "first-prompt"])
def test_a_sliding_layer_keeps_a_ring_that_wraps(seq, past):
    """Window 4 in a ring of 6 slots (window + chunk - 1 for chunks of 3): past positions wrap around it,
    outputs still match the custom op's body over the full past, and each new position lands in slot p mod 6."""
    window, ring = 4, 6
    fields = dict(num_heads=HEADS, kv_num_heads=KV, head_dim=D, window=window, rope=1, scale=D**-0.5)
    reference_model = one_node_model(fields)
    inputs = feeds(batch=2, seq=seq, past=past, padding=0, seed=seq + past)
    expected = ort.InferenceSession(reference_model, providers=["CPUExecutionProvider"]).run(None, inputs)
    model = ir.from_proto(onnx.load_from_string(reference_model))
    lower_ort_static(model)
    output, buffers = run_in_place(model, inputs, ring, past)
    np.testing.assert_allclose(output, expected[0], atol=1e-5)
    written = np.arange(past, past + seq)
    np.testing.assert_allclose(buffers["past_key"][:, :, written % ring], expected[1][:, :, written], atol=1e-6)


@pytest.fixture(scope="module")
def static_exports(tiny_exports, tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    lower_export(tiny_exports["canonical"], root / "all", "ort", kv_cache="static")
    lower_export(tiny_exports["canonical"], root / "last", "ort", kv_cache="static", logits="last", max_context=128)
    return root


@pytest.mark.parametrize("kind", ["all", "last"])
def test_every_parity_scenario_passes(static_exports, tmp_path, kind):
    result = cli("verify", static_exports / kind, "--checkpoint", "bundled:tiny", "--backend", "ort", "--report", tmp_path / "r",
                 "--max-context", 128, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {s["name"] for s in report["scenarios"]} >= {"prefill_decode", "left_padded_batch", "long_context"}
    manifest = ExportDir.open(static_exports / kind).manifest
    assert manifest.kv_cache == "static" and manifest.max_context == (512 if kind == "all" else 128)


def test_the_session_decodes_ragged_rows_in_place(static_exports):
    """Rows of different lengths in one buffer per layer; each step writes one slot per row, nothing is reallocated."""
    export = ExportDir.open(static_exports / "all")
    reference = load_reference_model(Checkpoint.open(TINY_DIR))
    ids = np.random.default_rng(1).integers(16, 2048, (2, 12))
    mask = np.ones_like(ids)
    mask[1, :5] = 0  # row 1 holds 7 tokens, row 0 twelve
    with OrtRunner(export.model_path, static_context=export.static_context) as runner:
        session = runner.new_session(export.cache_layout())
        assert isinstance(session, StaticKVCacheSession)
        logits = session.prefill(ids, mask)
        buffer = session.caches["past_key_values.0.key"]
        address = buffer.ctypes.data
        expected = TorchRunner(reference).new_session(export.cache_layout())
        want = expected.prefill(ids, mask)
        for _ in range(6):
            token = want[:, -1].argmax(-1)
            np.testing.assert_allclose(logits[:, -1], want[:, -1], atol=1e-4)
            logits, want = session.decode(token), expected.decode(token)
        assert session.caches["past_key_values.0.key"].ctypes.data == address and list(session.filled) == [18, 13]
        assert not buffer[:, :, 18:].any() and buffer[1, :, 12].any() and not buffer[1, :, 13:].any()


def test_an_all_global_model_and_onnxruntime_genai_with_the_shared_buffer(tmp_path):
    og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")
    checkpoint = lg_random(tmp_path / "ckpt", "1.2b")
    result = cli("export", checkpoint, "-o", tmp_path / "static", "--target", "ort", "--kv-cache", "static", "--max-context", 96)
    assert result.exit_code == 0 and "in-place KV cache: 96 slots" in result.output, result.output
    result = cli("verify", tmp_path / "static", "--checkpoint", checkpoint, "--backend", "ort", "--report", tmp_path / "r",
                 "--scenario", "prefill_decode", "--scenario", "left_padded_batch", "--quiet")
    assert result.exit_code == 0, result.output
    genai = json.loads((tmp_path / "static" / "genai_config.json").read_text())
    assert genai["search"]["past_present_share_buffer"] is True and genai["search"]["max_length"] == 96
    chat = ChatTokenizer.open(checkpoint)
    ids = chat.prompt_ids([{"role": "user", "content": "Show me def dumps"}])
    theirs = genai_greedy(og, og.Model(str(tmp_path / "static")), ids, 24)
    reference = load_reference_model(Checkpoint.open(checkpoint))
    ours = list(generate_tokens(TorchRunner(reference).new_session(ExportDir.open(tmp_path / "static").cache_layout()), ids, 24,
                                chat.stop_ids))
    assert len(ours) > 10 and theirs[: len(ours)] == ours


def test_onnxruntime_genai_runs_the_rings_of_a_hybrid_model(static_exports):
    """genai binds max_length slots to every layer, sliding ones included: the rings read their length from the
    buffer, so its greedy tokens still equal the reference's, past the window of 16."""
    og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed")
    export = ExportDir.open(static_exports / "all")
    assert export.has_rings and export.manifest.passes["ort:lower_ort_static"]["ring_caches"] == 6
    chat = ChatTokenizer.open(TINY_DIR)
    ids = chat.prompt_ids([{"role": "user", "content": "Show me def dumps"}])
    reference = load_reference_model(Checkpoint.open(TINY_DIR))
    ours = list(generate_tokens(TorchRunner(reference).new_session(export.cache_layout()), ids, 40, chat.stop_ids))
    theirs = genai_greedy(og, og.Model(str(export.directory)), ids, 40)
    assert len(ours) > 20 and theirs[: len(ours)] == ours


@pytest.mark.hardening("exports", tried="--kv-cache static on another target, --max-context past the positions or the budget, "
                       "--max-context without static, a static export to triton", expect="exit 2 naming the option, nothing written")
def test_bad_static_requests_are_refused(tiny_exports, tmp_path):
    canonical = tiny_exports["canonical"]
    cases = [
        (["lower", canonical, "--target", "standard", "--kv-cache", "static"], "--kv-cache: static (an in-place cache) needs --target ort"),
        (["lower", canonical, "--target", "ort", "--kv-cache", "static", "--max-context", 600], "--max-context: 600 exceeds the model's max_position_embeddings 512"),
        (["lower", canonical, "--target", "ort", "--kv-cache", "static", "--max-context", 512, "--kv-budget", 0.001],
         "over the --kv-budget of 0.001 GiB (at most 235 slots fit)"),
        (["lower", canonical, "--target", "ort", "--max-context", 64], "--max-context: sizes an in-place cache: it needs --kv-cache static"),
    ]
    for args, message in cases:
        result = cli(*args, "-o", tmp_path / "out")
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "out").exists()


@pytest.mark.hardening("Triton", tried="a static export with --runtime onnxruntime; engine knobs (--max-batch, --max-context) on a "
                       "full-cache export or past the export's positions", expect="exit 2 naming the option, nothing written")
def test_triton_refuses_engine_requests_it_cannot_serve(static_exports, tiny_exports, tmp_path):
    cases = [
        ((static_exports / "all", "--runtime", "onnxruntime"), "--runtime: an in-place KV cache export (--kv-cache static) is "
         "served by the resident engine (python-ort runtime), not onnxruntime"),
        ((tiny_exports["ort"], "--max-batch", 4), "size the resident engine, which needs an export with an in-place KV cache"),
        ((static_exports / "last", "--max-context", 200), "--max-context: 200 exceeds the export's in-place cache of 128 positions"),
        ((static_exports / "last", "--max-batch", 0), "--max-batch: must be an integer of at least 1, got 0"),
        ((static_exports / "all", "--prefill-chunk", 300), "--prefill-chunk: 300 exceeds 256: the export's sliding layers keep rings"),
    ]
    for args, message in cases:
        result = cli("triton", *args, "--repo", tmp_path / "repo")
        assert result.exit_code == 2 and message in result.output and not (tmp_path / "repo").exists(), result.output
