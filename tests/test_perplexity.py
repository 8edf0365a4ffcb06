"""verify's perplexity scenario: a correct export passes on real text, a corrupted one fails, bad text is refused."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from test_verify import corrupt_layer, verify

from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.export import lower_export
from exaone4.exporter.parity.metrics import next_token_metrics, perplexity_summary
from exaone4.exporter.parity.perplexity import windows
from exaone4.exporter.tiny import HELDOUT_TEXT, TINY_DIR

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
PPL = ["--backend", "ort", "--scenario", "perplexity"]


def test_next_token_metrics_against_a_hand_computed_case():
    """Two positions over a vocabulary of 2, every number worked out on paper."""
    ln = math.log
    expected = np.array([[ln(3), 0.0], [ln(3), 0.0]])  # p = (3/4, 1/4) at both positions
    got = np.array([[ln(4), 0.0], [0.0, ln(3)]])  # q = (4/5, 1/5), then (1/4, 3/4)
    per = next_token_metrics(expected, got, np.array([0, 1]))
    assert per["nll_reference"] == pytest.approx([ln(4 / 3), ln(4)])
    assert per["nll"] == pytest.approx([ln(5 / 4), ln(4 / 3)])
    kl = [0.75 * ln(0.75 / 0.8) + 0.25 * ln(0.25 / 0.2), 0.75 * ln(3) + 0.25 * ln(1 / 3)]
    assert per["kl"] == pytest.approx(kl)
    assert per["top1"].tolist() == [True, False]
    summary = perplexity_summary(per)
    assert summary["reference_perplexity"] == pytest.approx(math.sqrt(16 / 3))
    assert summary["perplexity"] == pytest.approx(math.sqrt(5 / 3))
    assert summary["rel_diff"] == pytest.approx(math.sqrt(5) / 4 - 1)
    assert summary["top1"] == 0.5
    assert summary["kl_mean"] == pytest.approx(sum(kl) / 2) and summary["kl_max"] == pytest.approx(kl[1])


@pytest.mark.parametrize("count,size", [(2, 512), (5, 3), (6, 3), (2210, 512), (1000, 2), (513, 512)])
def test_windows_predict_every_token_but_the_first_once(count, size):
    spans = windows(count, size)
    assert all(2 <= end - start <= size for start, end in spans)
    targets = [t for start, end in spans for t in range(start + 1, end)]
    assert targets == list(range(1, count))


def test_default_text_is_held_out_from_the_bundled_model():
    sys.path.insert(0, str(SCRIPTS))
    try:
        from tiny_tokenizer import _is_heldout
    finally:
        sys.path.remove(str(SCRIPTS))
    assert _is_heldout("encodings/punycode.py")  # the training split's rule: never trained on
    assert not _is_heldout("encodings/idna.py")  # (the rule does discriminate)
    assert (HELDOUT_TEXT.parent / "heldout-LICENSE.txt").read_text().count("PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2") == 1
    stdlib = Path(json.__file__).parents[1] / "encodings" / "punycode.py"
    if sys.version_info[:3] == (3, 11, 7) and stdlib.is_file():  # the training interpreter: shipped verbatim
        assert HELDOUT_TEXT.read_bytes() == stdlib.read_bytes()
    assert 1000 < len(ChatTokenizer.open(TINY_DIR).encode(HELDOUT_TEXT.read_text("utf-8"))) < 4000  # a few thousand: CI time


def _report(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text())


def test_ort_export_passes_on_the_default_held_out_text(tiny_exports, tmp_path):
    result = verify(tiny_exports["ort"], tmp_path / "r", *PPL)
    assert result.exit_code == 0, result.output
    report = _report(tmp_path / "r")
    ppl = report["perplexity"]
    assert report["passed"] and report["scenarios"] == [] and ppl["skipped"] == {}
    assert "punycode.py" in ppl["text"]["source"] and ppl["text"]["sha256"] == hashlib.sha256(HELDOUT_TEXT.read_bytes()).hexdigest()
    assert (ppl["text"]["tokens"], ppl["windows"], ppl["positions"], ppl["window"]) == (2210, 5, 2209, 512)
    assert ppl["reference_perplexity"] == pytest.approx(19.94, abs=0.01)  # docs/parity-report.md quotes it
    ort = ppl["results"]["ort"]
    assert ort["passed"] and ort["failures"] == []
    assert abs(ort["rel_diff"]) < 1e-6 and ort["top1"] == 1.0 and ort["kl_max"] < 1e-9
    assert ort["reference_perplexity"] == ppl["reference_perplexity"]
    assert "## Perplexity on real text" in (tmp_path / "r" / "report.md").read_text()
    cases = [c for c in ET.parse(tmp_path / "r" / "junit.xml").getroot().iter("testcase")]
    assert [(c.get("classname"), c.get("name")) for c in cases] == [("parity.ort", "perplexity")]


def _excerpt(path: Path, characters: int = 1500) -> Path:
    """The first characters of the held-out text as a --text file (about 470 tokens: quick)."""
    path.write_text(HELDOUT_TEXT.read_text("utf-8")[:characters], encoding="utf-8")
    return path


def test_given_text_file_passes_in_small_windows(tiny_exports, tmp_path):
    text = _excerpt(tmp_path / "mine.txt")
    result = verify(tiny_exports["ort"], tmp_path / "r", *PPL, "--text", str(text), "--text-window", "128")
    assert result.exit_code == 0, result.output
    ppl = _report(tmp_path / "r")["perplexity"]
    tokens = len(ChatTokenizer.open(TINY_DIR).encode(text.read_text("utf-8")))
    assert ppl["text"]["source"] == str(text.resolve()) and ppl["text"]["tokens"] == tokens
    assert (ppl["window"], ppl["windows"], ppl["positions"]) == (128, len(windows(tokens, 128)), tokens - 1)
    assert ppl["results"]["ort"]["passed"]


def test_corrupted_export_fails_the_perplexity_check(tiny_exports, tmp_path):
    broken = corrupt_layer(tiny_exports["ort"], tmp_path / "broken", layer=5)
    result = verify(broken, tmp_path / "r", *PPL, "--text", str(_excerpt(tmp_path / "t.txt")))
    assert result.exit_code == 1, result.output
    report = _report(tmp_path / "r")
    ort = report["perplexity"]["results"]["ort"]
    assert not report["passed"] and not ort["passed"]
    assert any(f.startswith("mean next-token KL on the text") for f in ort["failures"]), ort["failures"]
    assert ort["kl_mean"] > 100 * report["perplexity"]["tolerance"]["kl_mean"]
    failure = ET.parse(tmp_path / "r" / "junit.xml").getroot().find(".//testcase[@name='perplexity']/failure")
    assert failure is not None
    assert "perplexity / ort:" in (tmp_path / "r" / "report.md").read_text()


def test_logits_last_export_is_skipped_with_the_reason(tiny_exports, tmp_path):
    last = tmp_path / "last"
    lower_export(tiny_exports["canonical"], last, "ort", logits="last")
    result = verify(last, tmp_path / "r", *PPL)
    assert result.exit_code == 0, result.output
    ppl = _report(tmp_path / "r")["perplexity"]
    assert ppl["results"] == {} and "needs every position's logits" in ppl["skipped"]["ort"]
    assert "--logits all" in ppl["skipped"]["ort"]
    skipped = ET.parse(tmp_path / "r" / "junit.xml").getroot().find(".//testcase[@name='perplexity']/skipped")
    assert "--logits all" in skipped.get("message")


@pytest.mark.parametrize("case", ["missing", "directory", "latin-1", "empty", "one token"])
def test_bad_text_exits_2_naming_the_file_and_writes_nothing(tiny_exports, tmp_path, case):
    path = tmp_path / "text.txt"
    if case == "directory":
        path.mkdir()
    elif case == "latin-1":
        path.write_bytes("caf\u00e9 = 1\n".encode("latin-1"))
    elif case != "missing":
        path.write_text({"empty": "", "one token": "x"}[case])
    result = verify(tiny_exports["ort"], tmp_path / "r", *PPL, "--text", str(path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.output
    assert not (tmp_path / "r").exists()


def test_text_without_the_perplexity_scenario_is_refused(tiny_exports, tmp_path):
    text = _excerpt(tmp_path / "t.txt")
    result = verify(tiny_exports["ort"], tmp_path / "r", "--scenario", "prefill", "--text", str(text))
    assert result.exit_code == 2 and "--text: given, but --scenario does not select perplexity" in result.output
    assert not (tmp_path / "r").exists()
