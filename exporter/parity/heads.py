"""`verify` for head exports (base model, sequence / token classification, QA): one forward per scenario.

A head has no KV cache and nothing to decode, so its scenarios are single calls:

    padded_batch   a row with no padding longer than the window, a left-padded and a right-padded row
    past_window    one prompt of 2W + 5 tokens (W the sliding window; 21 with none)

Each backend (the export in onnxruntime, the checkpoint in transformers' own class)
gets the reference's feeds; every output is compared where real tokens are (all rows
for a sequence classifier's pooled logits): max abs / rel error and cosine, plus what a
user of the head sees: label agreement (argmax per row or per token) for classifiers,
span agreement (the best answer span, start <= end within head_serving.MAX_ANSWER tokens) for QA.
The bounds are the precision's row of tolerances.py: logits_rel, cosine, and top1 for the
agreements.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..contract import ATTENTION_MASK, END_LOGITS, INPUT_IDS, START_LOGITS
from ..head_serving import best_span
from ..heads import CLASSIFIERS, Head
from ..runners import Runner
from .metrics import tensor_errors
from .scenarios import FIRST_ORDINARY_TOKEN
from .tolerances import Tolerance


def head_scenarios(vocab: int, window: int | None, context: int, pad_token_id: int | None, seed: int = 0) -> list[dict]:
    """[{name, description, input_ids, attention_mask}]: seeded, padded with pad_token_id (0 when none)."""
    rng = np.random.default_rng(seed)
    span = window or 16
    long = min(2 * span + 5, context)
    lengths = (long, max(long // 2, 2), max(long // 3, 1))
    padded = _batch(rng, vocab, lengths, ("none", "left", "right"), pad_token_id)
    return [
        {"name": "padded_batch", "description": f"rows of {lengths[0]} (no padding), {lengths[1]} (left-padded) and "
         f"{lengths[2]} (right-padded) tokens, window {window}", **padded},
        {"name": "past_window", "description": f"one prompt of {long} tokens, past the window of {window}",
         **_batch(rng, vocab, (long,), ("none",), pad_token_id)},
    ]


def _batch(rng, vocab: int, lengths, sides, pad_token_id: int | None) -> dict[str, np.ndarray]:
    width, pad = max(lengths), pad_token_id or 0
    ids = np.full((len(lengths), width), pad, np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    low = min(FIRST_ORDINARY_TOKEN, vocab - 1)
    for row, (length, side) in enumerate(zip(lengths, sides)):
        start = width - length if side == "left" else 0
        tokens = rng.integers(low, vocab, length)
        tokens[tokens == pad] = low if low != pad else low + 1  # a real token is never the pad id
        ids[row, start : start + length], mask[row, start : start + length] = tokens, 1
    return {INPUT_IDS: ids, ATTENTION_MASK: mask}


def compare_head(head: Head, expected: dict[str, np.ndarray], got: dict[str, np.ndarray], mask: np.ndarray,
                 tolerance: Tolerance) -> dict:
    """Errors per output at real positions, the head's agreement, and the failures against `tolerance`."""
    rows = mask.astype(bool)
    outputs = {}
    for name, want in expected.items():
        have = got[name]
        token_level = want.shape[:2] == mask.shape
        outputs[name] = tensor_errors(want[rows] if token_level else want, have[rows] if token_level else have)
    agreement = _agreement(head, expected, got, rows)
    failures = [f"{name} max rel error {e['max_rel']:.6g} > {tolerance.logits_rel:g}"
                for name, e in outputs.items() if e["max_rel"] > tolerance.logits_rel]
    failures += [f"{name} cosine {e['cosine']:.8g} < {tolerance.cosine:g}" for name, e in outputs.items() if e["cosine"] < tolerance.cosine]
    if agreement is not None and agreement["value"] < tolerance.top1:
        failures.append(f"{agreement['kind']} {agreement['value']:.4g} < {tolerance.top1:g}")
    return {"passed": not failures, "failures": failures, "outputs": outputs, "agreement": agreement}


def _agreement(head: Head, expected: dict, got: dict, rows: np.ndarray) -> dict | None:
    if head in CLASSIFIERS:
        want, have = expected["logits"], got["logits"]
        if head is Head.TOKEN_CLASSIFICATION:
            want, have = want[rows], have[rows]
        same = want.argmax(-1) == have.argmax(-1)
        return {"kind": "label agreement", "value": float(same.mean()), "compared": int(same.size)}
    if head is Head.QUESTION_ANSWERING:
        spans = [(best_span(expected[START_LOGITS][b], expected[END_LOGITS][b], rows[b]),
                  best_span(got[START_LOGITS][b], got[END_LOGITS][b], rows[b])) for b in range(rows.shape[0])]
        return {"kind": "span agreement", "value": float(np.mean([a == b for a, b in spans])), "compared": len(spans)}
    return None


def run_head_scenarios(head: Head, reference: Runner, backends: dict[str, Runner], scenarios: list[dict],
                       tolerance: Tolerance, progress: Callable[[str], None]) -> list[dict]:
    """Every scenario through the reference, then each backend; returns the report's scenario entries."""
    results = []
    for scenario in scenarios:
        feeds = {INPUT_IDS: scenario[INPUT_IDS], ATTENTION_MASK: scenario[ATTENTION_MASK]}
        progress(f"scenario {scenario['name']}: reference")
        expected = reference.infer(feeds)
        entry = {"name": scenario["name"], "description": scenario["description"],
                 "feeds": {name: value.tolist() for name, value in feeds.items()}, "results": {}}
        for name, runner in backends.items():
            progress(f"scenario {scenario['name']}: {name}")
            entry["results"][name] = compare_head(head, expected, runner.infer(feeds), feeds[ATTENTION_MASK], tolerance)
        results.append(entry)
    return results


def head_backends(export, checkpoint, names: tuple[str, ...], providers: tuple[str, ...]) -> tuple[dict, dict]:
    """({name: runner}, {name: why skipped}) for `verify --backend` on a head export."""
    from ..runners import OrtRunner, TransformersHeadRunner

    head, backends, skipped = export.manifest.head, {}, {}
    for name in names:
        if name == "ort":
            backends[name] = OrtRunner(export.model_path, providers=providers)
        elif name == "trt":
            skipped[name] = "TensorRT engines are built for causal-LM exports only"
        elif checkpoint.config.pad_token_id is None and head is Head.SEQUENCE_CLASSIFICATION:
            skipped[name] = "transformers refuses batches of a sequence classifier without pad_token_id"
        else:
            try:
                import transformers  # noqa: F401
            except ImportError:
                skipped[name] = "transformers is not installed (pip install 'exaone4-export[test]')"
                continue
            backends[name] = TransformersHeadRunner(checkpoint.directory, head.value)
    return backends, skipped


def head_summary(result: dict) -> dict:
    """The worst error over a result's outputs, and its agreement: one table row (report.py)."""
    errors = result["outputs"].values()
    agreement = result["agreement"]
    return {"max_abs": max(e["max_abs"] for e in errors), "max_rel": max(e["max_rel"] for e in errors),
            "cosine": min(e["cosine"] for e in errors),
            "agreement": None if agreement is None else f"{agreement['kind']} {agreement['value']:.4g} of {agreement['compared']}"}
