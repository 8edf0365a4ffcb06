"""Write an output directory atomically: build it under a temporary name, rename when complete.

    with staged_directory(out, marker="export.json", force=False) as staging:
        ... write files into `staging` ...
    # `out` now holds exactly what was written, or is untouched if anything failed

A directory that exists, is not empty and holds no `marker` file (so it is not an
earlier output of the same kind) is refused unless `force` is set. If the block
raises (an error, Ctrl-C, or SIGTERM turned into `Terminated` by the CLI), the
staging directory is removed and `out` is left as it was. An earlier output is
replaced in two renames, so readers never see a half-written directory under the
final name. A lock file next to `out` (`.NAME.lock`, flock) keeps two runs from
writing the same output at once: the second is refused with the first's pid.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError


def check_output_dir(out: Path, marker: str, force: bool) -> None:
    """Refuse to overwrite a directory this tool did not write (unless forced)."""
    if out.exists() and not out.is_dir():
        raise InputError(str(out), "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file() and not force:
        raise InputError(str(out), f"exists, is not empty and holds no {marker}; use --force to overwrite it")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on writing `out`; refuse if another process holds it.

    The lock file is removed on release; with three or more runs racing on the
    same output in the instant of that removal, two could both get a lock.
    """
    lock_path = out.parent / f".{out.name}.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise InputError(str(out), f"is being written by another run (pid {holder}); wait for it to finish") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock_path.unlink(missing_ok=True)


@contextmanager
def staged_directory(out: Path, marker: str, force: bool = False) -> Iterator[Path]:
    out = Path(out)
    check_output_dir(out, marker, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        yield from _staged(out)


def _staged(out: Path) -> Iterator[Path]:
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
