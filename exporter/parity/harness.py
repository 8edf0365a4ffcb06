"""Run scenarios through the reference and each backend, compare, and locate divergence.

For each scenario the reference runs first: its prefill, its greedy decode tokens
(recorded, and replayed to every backend so all see identical feeds) and its
free-running greedy continuation. Each backend then runs the same feeds; the
logits of every step, the KV cache after the prefill and after the last step, and
(when the backend can expose them) every layer's hidden state after the prefill
are compared with `metrics`. Padding positions are excluded: no real token reads
them, and backends legitimately differ there.

The first diverging layer is the first layer whose hidden state or present KV
leaves the tolerance after the prefill step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..contract import KV_KINDS, CacheLayout, hidden_state_name, present_name
from ..runners import Runner
from .metrics import greedy_match_length, logits_metrics, tensor_errors
from .scenarios import Scenario
from .tolerances import Tolerance


@dataclass
class Trace:
    """What one runner produced for one scenario."""

    step_logits: list[np.ndarray] = field(default_factory=list)  # per step [B, S, vocab]
    step_masks: list[np.ndarray] = field(default_factory=list)  # per step: which query rows are real [B, S]
    prefill_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    final_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    prefill_mask: np.ndarray | None = None
    final_mask: np.ndarray | None = None
    decode_tokens: list[list[int]] = field(default_factory=list)
    greedy: list[int] = field(default_factory=list)


def run_scenario(runner: Runner, layout: CacheLayout, scenario: Scenario, decode_tokens: list[list[int]] | None) -> Trace:
    """Drive one runner through a scenario; decode_tokens None means choose greedily (the reference)."""
    trace = Trace()
    session = runner.new_session(layout)
    ids, mask = scenario.padded()
    logits = session.prefill(ids, mask)
    trace.step_logits.append(logits)
    trace.step_masks.append(mask.astype(bool))
    trace.prefill_outputs, trace.prefill_mask = session.last_outputs, session.mask
    for step in range(scenario.decode_steps):
        tokens = logits[:, -1].argmax(-1).tolist() if decode_tokens is None else decode_tokens[step]
        trace.decode_tokens.append([int(t) for t in tokens])
        logits = session.decode(np.array(tokens))
        trace.step_logits.append(logits)
        trace.step_masks.append(np.ones((scenario.batch, 1), bool))
    trace.final_outputs, trace.final_mask = session.last_outputs, session.mask
    for _ in range(scenario.greedy_tokens):
        token = int(logits[0, -1].argmax())
        trace.greedy.append(token)
        logits = session.decode(np.array([token] * scenario.batch))
    return trace


def _masked_kv(outputs: dict[str, np.ndarray], mask: np.ndarray, name: str, slots: int) -> np.ndarray:
    """The last `slots` positions of a present [B, KV, T, D], restricted to real (unpadded) ones: [n, KV, D]."""
    tensor = outputs[name][:, :, outputs[name].shape[2] - slots :]
    return tensor.transpose(0, 2, 1, 3)[mask[:, mask.shape[1] - slots :].astype(bool)]


def _common_slots(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], name: str) -> int:
    """Slots both caches hold: all of them, or a bounded window cache's tail (graphs/window_cache.py)."""
    return min(reference[name].shape[2], got[name].shape[2])


def compare(reference: Trace, got: Trace, num_layers: int, tolerance: Tolerance) -> dict:
    """Metrics per step and per layer, the failures against the tolerance, the first divergence."""
    steps = []
    for index, (expected, actual, rows) in enumerate(zip(reference.step_logits, got.step_logits, reference.step_masks)):
        kept = actual.shape[1]  # every position, or the last one only (an export with --logits last)
        expected, rows = expected[:, expected.shape[1] - kept :], rows[:, rows.shape[1] - kept :]
        metrics = logits_metrics(expected[rows], actual[rows])
        steps.append({"step": index, "kind": "prefill" if index == 0 else "decode", "positions": int(rows.sum()), **metrics})
    kv = [_kv_layer(reference, got, i) for i in range(num_layers)]
    rows = reference.step_masks[0]
    hidden = []
    for i in range(num_layers):
        name = hidden_state_name(i)
        if name in got.prefill_outputs and name in reference.prefill_outputs:
            hidden.append({"layer": i, **tensor_errors(reference.prefill_outputs[name][rows], got.prefill_outputs[name][rows])})
    failures = _failures(steps, kv, tolerance)
    return {
        "passed": not failures,
        "failures": failures,
        "steps": steps,
        "kv": kv,
        "hidden": hidden,
        "greedy_match": greedy_match_length(reference.greedy, got.greedy),
        "greedy_tokens": len(reference.greedy),
        "first_divergence": first_divergence(kv, hidden, tolerance) if failures else None,
    }


def _kv_layer(reference: Trace, got: Trace, layer: int) -> dict:
    row = {"layer": layer}
    for kind in KV_KINDS:
        name = present_name(layer, kind)
        slots = _common_slots(reference.prefill_outputs, got.prefill_outputs, name)
        prefill = tensor_errors(_masked_kv(reference.prefill_outputs, reference.prefill_mask, name, slots),
                                _masked_kv(got.prefill_outputs, reference.prefill_mask, name, slots))
        slots = _common_slots(reference.final_outputs, got.final_outputs, name)
        final = tensor_errors(_masked_kv(reference.final_outputs, reference.final_mask, name, slots),
                              _masked_kv(got.final_outputs, reference.final_mask, name, slots))
        row[kind] = {"prefill_max_rel": prefill["max_rel"], "final_max_rel": final["max_rel"], "final_max_abs": final["max_abs"]}
    return row


def _failures(steps: list[dict], kv: list[dict], tol: Tolerance) -> list[str]:
    failures = []
    checks: list[tuple[str, Callable[[dict], bool], str]] = [
        ("max_rel", lambda m: m["max_rel"] <= tol.logits_rel, f"logits max rel error > {tol.logits_rel:g}"),
        ("cosine", lambda m: m["cosine"] >= tol.cosine, f"logits cosine < {tol.cosine:g}"),
        ("kl", lambda m: m["kl"] <= tol.kl, f"next-token KL > {tol.kl:g}"),
    ]
    for key, ok, message in checks:
        bad = [s for s in steps if not ok(s)]
        if bad:
            worst = max(bad, key=lambda s: abs(s[key] - (1.0 if key in ("cosine", "top1") else 0.0)))
            failures.append(f"{message}: {worst[key]:.6g} at {worst['kind']} step {worst['step']} ({len(bad)} of {len(steps)} steps)")
    top1 = scenario_top1(steps)
    if top1 < tol.top1:  # over all positions: one decode step of 2 rows says little on its own
        failures.append(f"top-1 agreement < {tol.top1:g}: {top1:.4g} over {sum(s['positions'] for s in steps)} positions")
    for row in kv:
        for kind in KV_KINDS:
            worst = max(row[kind]["prefill_max_rel"], row[kind]["final_max_rel"])
            if worst > tol.kv_rel:
                failures.append(f"{present_name(row['layer'], kind)} max rel error {worst:.6g} > {tol.kv_rel:g}")
    return failures


def scenario_top1(steps: list[dict]) -> float:
    """Top-1 agreement over every position of every step."""
    positions = sum(s["positions"] for s in steps)
    return sum(s["top1"] * s["positions"] for s in steps) / max(positions, 1)


def first_divergence(kv: list[dict], hidden: list[dict], tol: Tolerance) -> dict | None:
    """The first layer whose hidden state (after prefill) or present KV leaves tolerance."""
    hidden_by_layer = {row["layer"]: row for row in hidden}
    for row in kv:
        layer = row["layer"]
        kv_error = max(row[k]["prefill_max_rel"] for k in ("key", "value"))
        if kv_error > tol.kv_rel:
            return {"layer": layer, "what": "present key/value", "max_rel": kv_error}
        h = hidden_by_layer.get(layer)
        if h is not None and h["max_rel"] > tol.hidden_rel:
            return {"layer": layer, "what": "hidden state (layer output)", "max_rel": h["max_rel"]}
    return {"layer": None, "what": "logits only (no layer output or KV left tolerance)", "max_rel": None}
