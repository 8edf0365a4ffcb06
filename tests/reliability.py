"""Record what the hardening tests tried, for docs/reliability.md (issue 9).

A test joins the record with the `hardening` marker:

    @pytest.mark.hardening("safetensors", expect="InputError naming the file and tensor")
    def test_...(...):

Each collected test (each parametrized case) becomes one row: its category, what
was tried (the marker's `tried`, else the parameter id, else the docstring's first
line), how many cases it ran (1, or what the test counted through the
`hardening_cases` fixture: hypothesis tests count their examples), what the tool
must do (`expect`) and the outcome (passed / failed / skipped).

At the end of the session the rows go to pytest's cache under
`exaone4/reliability` (.pytest_cache/v/exaone4/reliability);
`scripts/reliability_report.py` turns them into docs/reliability.md
(`make reliability` runs both). conftest.py imports the hooks below.
"""

from __future__ import annotations

import platform
import sys
import time

import pytest

CACHE_KEY = "exaone4/reliability"
_ROWS = pytest.StashKey[dict]()
_STARTED = pytest.StashKey[float]()
_COUNT = pytest.StashKey[list]()


class CaseCounter:
    """Counts the cases one test runs (e.g. hypothesis examples); the row shows the count."""

    def __init__(self, box: list) -> None:
        self._box = box

    def add(self, n: int = 1) -> None:
        self._box[0] += n


@pytest.fixture
def hardening_cases(request) -> CaseCounter:
    """Call `.add()` once per case a test runs; without it a test counts as one case."""
    box = [0]
    request.node.stash[_COUNT] = box
    return CaseCounter(box)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "hardening(category, expect=..., tried=...): a bad-input / robustness case counted in docs/reliability.md",
    )
    config.stash[_ROWS] = {}
    config.stash[_STARTED] = time.time()


def _tried(item, marker) -> str:
    if "tried" in marker.kwargs:
        return marker.kwargs["tried"]
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        return callspec.id
    doc = (item.function.__doc__ or item.name).strip().splitlines()[0]
    return doc.rstrip(".")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    marker = item.get_closest_marker("hardening")
    if marker is None or not marker.args:
        return report
    rows = item.config.stash[_ROWS]
    row = rows.setdefault(item.nodeid, {
        "category": marker.args[0],
        "tried": _tried(item, marker),
        "expect": marker.kwargs.get("expect", ""),
        "test": item.nodeid.split("[")[0],
        "cases": 1,
        "outcome": "passed",
        "seconds": 0.0,
    })
    row["seconds"] = round(row["seconds"] + report.duration, 2)
    counted = item.stash.get(_COUNT, [0])[0]
    if counted:
        row["cases"] = counted
    if report.failed:
        row["outcome"] = "failed"
    elif report.skipped and row["outcome"] != "failed":
        row["outcome"] = "skipped"
    return report


def pytest_sessionfinish(session, exitstatus):
    rows = session.config.stash.get(_ROWS, {})
    cache = getattr(session.config, "cache", None)
    if not rows or cache is None:
        return
    cache.set(CACHE_KEY, {
        "rows": list(rows.values()),
        "command": "pytest " + " ".join(session.config.invocation_params.args),
        "seconds": round(time.time() - session.config.stash[_STARTED], 1),
        "finished": time.strftime("%Y-%m-%d", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}, {_cores()} CPU cores",
    })


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
