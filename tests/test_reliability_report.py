"""scripts/reliability_report.py: the record of a run becomes the tables of docs/reliability.md."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reliability_report.py"


def load_script():
    spec = importlib.util.spec_from_file_location("reliability_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(outcome="passed"):
    row = dict(category="safetensors", tried="overlapping | tensors", expect="exit 2", test="tests/t.py::test_a",
               cases=1, outcome="passed", seconds=0.1)
    return {"rows": [row, dict(row, category="fuzz", tried="bytes", cases=200, outcome=outcome)], "command": "pytest -m hardening",
            "seconds": 12.5, "finished": "2026-01-01", "python": "3.11.7", "platform": "Linux x86_64, 2 CPU cores"}


def test_report_counts_cases_per_category_and_fails_on_a_failed_case(tmp_path):
    report = load_script()
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record()))
    assert report.main(["--record", str(path), "-o", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "| fuzz | 1 | 200 | 1 passed |" in text and "| **all** | **2** | **201** | 2 passed |" in text
    assert "overlapping \\| tensors" in text and "make reliability" in text
    path.write_text(json.dumps(record("failed")))
    assert report.main(["--record", str(path), "-o", str(tmp_path / "r.md")]) == 1
    assert "1 FAILED" in (tmp_path / "r.md").read_text()
    assert report.main(["--record", str(tmp_path / "absent"), "-o", str(tmp_path / "r.md")]) == 2


def test_parametrized_cases_under_one_description_are_one_row(tmp_path):
    """A test run once per architecture with one `tried` text: one row, cases summed, a failure anywhere shown."""
    report = load_script()
    row = dict(category="config", tried="bad labels", expect="exit 2", test="tests/t.py::test_b", cases=1, outcome="passed",
               seconds=0.5)
    rows = [row, dict(row), dict(row, outcome="failed"), dict(row, tried="other")]
    path = tmp_path / "record.json"
    path.write_text(json.dumps({**record(), "rows": rows}))
    assert report.main(["--record", str(path), "-o", str(tmp_path / "r.md")]) == 1
    text = (tmp_path / "r.md").read_text()
    assert "| config | 2 | 4 | 1 failed, 1 passed |" in text
    assert text.count("| bad labels | 3 | exit 2 | failed |") == 1
