"""Progress reporting for long CLI steps: a rich bar, nothing (--quiet), or JSON lines (--json).

Library functions take a `Progress` (default: silent) and call
`progress.step(name)` when a phase starts and `progress.advance(done, total)`
inside it (tensors streamed, scenarios run). The CLI picks the flavour:

    rich    a status line with a bar and counts on stderr (when stderr is a terminal)
    quiet   nothing (also the default when stderr is not a terminal)
    json    one JSON object per event on stderr: {"event": "step", "name": ...} /
            {"event": "progress", "step": ..., "done": n, "total": m}
"""

from __future__ import annotations

import json
import sys


class Progress:
    """Silent progress; the base of the other flavours."""

    def __init__(self) -> None:
        self.current = ""

    def step(self, name: str) -> None:
        self.current = name

    def advance(self, done: int, total: int) -> None:
        pass

    def __call__(self, name: str) -> None:  # usable where a plain callback is expected
        self.step(name)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        pass


class JsonProgress(Progress):
    def step(self, name: str) -> None:
        super().step(name)
        print(json.dumps({"event": "step", "name": name}), file=sys.stderr, flush=True)

    def advance(self, done: int, total: int) -> None:
        print(json.dumps({"event": "progress", "step": self.current, "done": done, "total": total}), file=sys.stderr, flush=True)


class RichProgress(Progress):
    def __enter__(self) -> RichProgress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task("starting", total=None)
        return self

    def step(self, name: str) -> None:
        super().step(name)
        self.bar.update(self.task, description=name, completed=0, total=None)

    def advance(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)


def make_progress(quiet: bool = False, as_json: bool = False) -> Progress:
    """JSON lines when asked; a rich bar on a terminal; otherwise nothing (logs and pipes stay
    clean, and a refused input still prints exactly one line)."""
    if as_json:
        return JsonProgress()
    if quiet or not sys.stderr.isatty():
        return Progress()
    return RichProgress()
