"""Metric definitions and the first-divergence rule, on hand-made numbers."""

from __future__ import annotations

import numpy as np

from exaone4.exporter.parity.harness import first_divergence
from exaone4.exporter.parity.metrics import greedy_match_length, logits_metrics, tensor_errors
from exaone4.exporter.parity.tolerances import TOLERANCES


def test_identical_logits_are_perfect():
    logits = np.random.default_rng(0).normal(size=(3, 50))
    m = logits_metrics(logits, logits.copy())
    assert m["max_abs"] == 0 and m["kl"] == 0 and m["top1"] == 1 and m["top5"] == 1
    assert abs(m["cosine"] - 1) < 1e-12


def test_swapped_argmax_is_counted():
    expected = np.array([[0.0, 1.0, 5.0], [3.0, 0.0, 0.0]])
    got = np.array([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    m = logits_metrics(expected, got)
    assert m["top1"] == 0.5 and m["kl"] > 0.5 and m["max_abs"] == 4.0
    assert abs(m["max_rel"] - 4.0 / 5.0) < 1e-12


def test_relative_error_is_against_the_reference_scale():
    e = tensor_errors(np.array([10.0, -20.0, 0.0]), np.array([10.0, -20.0, 0.2]))
    assert e["max_abs"] == 0.2 and abs(e["max_rel"] - 0.01) < 1e-12


def test_greedy_match_length():
    assert greedy_match_length([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert greedy_match_length([], []) == 0


def test_first_divergence_prefers_the_earliest_layer():
    tol = TOLERANCES["fp32"]
    ok = {"prefill_max_rel": 1e-7, "final_max_rel": 1e-7}
    kv = [{"layer": i, "key": ok, "value": ok} for i in range(4)]
    hidden = [{"layer": i, "max_rel": 1e-7 if i < 2 else 0.5} for i in range(4)]
    assert first_divergence(kv, hidden, tol)["layer"] == 2
    kv[1] = {"layer": 1, "key": {"prefill_max_rel": 0.3, "final_max_rel": 0.3}, "value": ok}
    assert first_divergence(kv, hidden, tol) == {"layer": 1, "what": "present key/value", "max_rel": 0.3}
