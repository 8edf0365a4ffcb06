"""Start a real Triton Inference Server on loopback for tests, and always stop it by its pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
TRITON = ROOT / ".triton"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_triton() -> Path | None:
    """The unpacked server (scripts/setup_triton.sh), or None when it cannot be had."""
    if not (TRITON / "bin" / "tritonserver").is_file() or not (TRITON / "env" / ".complete").is_file():
        result = subprocess.run([str(ROOT / "scripts" / "setup_triton.sh"), str(TRITON), sys.executable],
                                capture_output=True, text=True)
        if result.returncode != 0:
            return None
    return TRITON


class ServerUrls(NamedTuple):
    http: str
    grpc: str
    metrics: str  # Prometheus text at http://{metrics}/metrics
    pid: int  # the server's, which leads its process group (the Python backend stubs are in it)


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in a process group (the server and its backend stubs), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
        except (OSError, IndexError, ValueError):
            continue
    return total


@contextlib.contextmanager
def triton_server(repo: Path, log: Path, timeout: float = 120.0):
    """Yield the ServerUrls of a server serving `repo`; killed by pid (its process group) on exit."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = dict(os.environ, LD_LIBRARY_PATH=str(TRITON / "libs"))
    command = [
        str(TRITON / "bin" / "tritonserver"), f"--model-repository={repo}", f"--backend-directory={TRITON / 'backends'}",
        "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
        "--allow-metrics=true", "--allow-cpu-metrics=false", "--metrics-address=127.0.0.1", f"--metrics-port={metrics}",
        "--metrics-interval-ms=200", "--log-verbose=0",
    ]
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver not ready after {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield ServerUrls(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}", process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
