"""Decode speed of float and weight-only quantized ort exports, interleaved (docs/benchmarks.md).

    python scripts/bench_weights.py OUT_DIR EXPORT [EXPORT ...] [--prompt 256] [--decode 32] [--reps 5]

Each EXPORT is an `ort` export directory (typically fp32, then `quantize --weights int8|int4` of it,
all with `--logits last`). Every export is opened once (2 threads, onnxruntime's CPU provider),
warmed up, then the repetitions run round-robin (scripts/bench_measure.py `interleaved`): a
random prompt is prefilled and `--decode` greedy tokens decoded through `KVCacheSession`.
Writes OUT_DIR/weights-speed.json with medians and every repetition, plus each export's
quantization record and file size; prints a Markdown table. The machines these run on are
shared: quote ratios between rows of one run, not absolute times across runs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from bench_measure import interleaved, session_repetition  # noqa: E402

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
    results = interleaved(repetitions, args.reps, args.prompt)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "prompt": args.prompt, "decode": args.decode,
              "reps": args.reps, "threads": args.threads, "exports": {n: {**described[n], **results[n]} for n in results}}
    (args.out / "weights-speed.json").write_text(json.dumps(record, indent=2) + "\n")
    print("| export | file MiB | decode ms/token (median) | prefill tok/s (median) |")
    print("|---|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | {described[name]['file_bytes'] / 2**20:.0f} | {result['decode_ms_per_token']:.1f} "
              f"| {result['prefill_tokens_per_s']:.0f} |")


if __name__ == "__main__":
    main()
