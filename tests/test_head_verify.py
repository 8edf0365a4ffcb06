"""`verify` on head exports: single-forward scenarios against the reference and transformers, agreements, failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import HEAD_EXPORTS
from head_models import head_checkpoint

from exaone4.exporter.cli import main
from exaone4.exporter.parity.heads import best_span

FIRST = {cls: (cls, archs[0]) for cls, archs in HEAD_EXPORTS.items()}


def verify(export, checkpoint, report, *extra):
    return CliRunner().invoke(main, ["verify", str(export), "--checkpoint", str(checkpoint), "--report", str(report),
                                     "--quiet", *extra])


@pytest.mark.parametrize("cls", sorted(FIRST))
def test_verify_passes_every_head_export_on_both_backends(head_exports, tmp_path, cls):
    entry = head_exports[FIRST[cls]]
    result = verify(entry["ort"], entry["checkpoint"], tmp_path / "report")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["head"]["architecture"] == cls and report["backends"] == ["ort", "transformers"]
    assert [s["name"] for s in report["scenarios"]] == ["padded_batch", "past_window"]
    for scenario in report["scenarios"]:
        for backend, outcome in scenario["results"].items():
            assert outcome["passed"] and max(e["max_rel"] for e in outcome["outputs"].values()) <= 1e-4, (backend, outcome)
            kind = {"Exaone4Model": None, "Exaone4ForQuestionAnswering": "span agreement"}.get(cls, "label agreement")
            assert (outcome["agreement"] or {}).get("kind") == kind and (kind is None or outcome["agreement"]["value"] == 1.0)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| padded_batch | ort | pass |" in markdown and "junit" not in markdown
    assert 'failures="0"' in (tmp_path / "report" / "junit.xml").read_text()


def test_verify_fails_an_export_against_other_weights(head_exports, tmp_path):
    """The same architecture with other weights: every output leaves tolerance, exit 1, failures listed."""
    cls, architecture = FIRST["Exaone4ForSequenceClassification"]
    _, other = head_checkpoint(cls, architecture, tmp_path / "other", seed=7)
    result = verify(head_exports[(cls, architecture)]["ort"], other, tmp_path / "report", "--backend", "ort")
    assert result.exit_code == 1, result.output
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "**FAIL**" in markdown and "logits max rel error" in markdown


@pytest.mark.hardening("verify", tried="--text (perplexity) or an unknown --scenario on a head export",
                       expect="exit 2, one line naming the option")
def test_verify_refuses_decoder_options_on_a_head(head_exports, tmp_path):
    entry = head_exports[FIRST["Exaone4ForQuestionAnswering"]]
    text = tmp_path / "text.txt"
    text.write_text("hello")
    result = verify(entry["ort"], entry["checkpoint"], tmp_path / "r1", "--text", str(text))
    assert result.exit_code == 2 and "--text: the perplexity scenario needs an Exaone4ForCausalLM" in result.output
    result = verify(entry["ort"], entry["checkpoint"], tmp_path / "r2", "--scenario", "prefill_decode")
    assert result.exit_code == 2 and "unknown scenario(s) prefill_decode for a head export" in result.output


def test_best_span_keeps_start_before_end_on_real_tokens():
    start = np.array([0.0, 5.0, 1.0, 9.0])
    end = np.array([8.0, 0.0, 2.0, 0.0])
    assert best_span(start, end, np.array([True, True, True, True])) == (3, 3)
    assert best_span(start, end, np.array([True, True, True, False])) == (0, 0)  # (1, 2) scores 7 < 8
    middle = np.array([False, True, True, False])
    assert best_span(start, end, middle, max_answer=2) == (1, 2)
    assert best_span(start, end, middle, max_answer=1) == (1, 1)
