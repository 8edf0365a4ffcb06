"""Decode speed of float and weight-only quantized ort exports, interleaved (docs/benchmarks.md).

    python scripts/bench_weights.py OUT_DIR EXPORT [EXPORT ...] [--prompt 256] [--decode 32] [--reps 5]

Each EXPORT is an `ort` export directory (typically fp32, then `quantize --weights int8|int4` of it,
all with `--logits last`). Every export is opened once (2 threads, onnxruntime's CPU provider),
warmed up, then the repetitions run round-robin: a random prompt is prefilled and `--decode`
greedy tokens decoded through `KVCacheSession` (scripts/bench_measure.py). The machines these
run on are shared and another tenant's burst can double a repetition, so each repetition's CPU
share (this process's CPU seconds / (wall seconds x threads)) is recorded and repetitions below
`--min-share` are discarded before the medians. Writes OUT_DIR/weights-speed.json (medians,
min-max, every repetition with its share, each export's quantization record and file size) and
prints a Markdown table. Quote ratios between rows of one run, not absolute times across runs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from bench_measure import session_repetition, summary  # noqa: E402

from exaone4.exporter.artifacts import ExportDir  # noqa: E402
from exaone4.exporter.runners import OrtRunner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("exports", type=Path, nargs="+")
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-share", type=float, default=0.8, help="discard repetitions with a lower CPU share")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    opened, repetitions, described = [], {}, {}
    for directory in args.exports:
        export = ExportDir.open(directory)
        config = export.manifest.config
        ids = rng.integers(16, config["vocab_size"], (1, args.prompt)).astype(np.int64)
        runner = OrtRunner(export.model_path, threads=args.threads)
        runner.open()
        opened.append(runner)
        name = directory.name
        repetitions[name] = session_repetition(runner, export.cache_layout(), ids, args.decode)
        described[name] = {"quantization": export.manifest.quantization,
                           "file_bytes": sum((export.directory / f).stat().st_size for f in export.manifest.files)}
    runs = shared_interleaved(repetitions, args.reps, args.threads)
    results = {}
    for name, reps in runs.items():
        kept = [r for r in reps if r["share"] >= args.min_share]
        used = kept or reps  # when none is clean, all of them, and the table says 0 kept
        results[name] = {**summary(args.prompt, [r["prefill_s"] for r in used], [r["decode_s"] for r in used]),
                         "kept": len(kept), "repetitions": reps}
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "prompt": args.prompt, "decode": args.decode,
              "reps": args.reps, "threads": args.threads, "exports": {n: {**described[n], **results[n]} for n in results}}
    (args.out / "weights-speed.json").write_text(json.dumps(record, indent=2) + "\n")
    print("| export | file MiB | decode ms/token, median (min-max) | prefill tok/s, median | repetitions kept |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        low, _, high = result["decode_ms"]
        print(f"| {name} | {described[name]['file_bytes'] / 2**20:.0f} | {result['decode_ms_per_token']:.1f} ({low:.1f}-{high:.1f}) "
              f"| {result['prefill_tokens_per_s']:.0f} | {result['kept']}/{args.reps} |")


def shared_interleaved(repetitions: dict, reps: int, threads: int) -> dict[str, list[dict]]:
    """One warm-up each, then `reps` rounds round-robin; every repetition with its CPU share."""
    for repetition in repetitions.values():
        repetition()
    runs: dict[str, list[dict]] = {name: [] for name in repetitions}
    for _ in range(reps):
        for name, repetition in repetitions.items():
            cpu, wall = _cpu_seconds(), time.perf_counter()
            prefill, decode = repetition()
            share = (_cpu_seconds() - cpu) / ((time.perf_counter() - wall) * threads)
            runs[name].append({"prefill_s": prefill, "decode_s": decode, "share": round(share, 3)})
    return runs


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


if __name__ == "__main__":
    main()
