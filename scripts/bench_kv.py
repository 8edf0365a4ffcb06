"""Decode cost against context: the growing KV cache against the in-place one (`--kv-cache static`).

    python scripts/bench_kv.py OUT [--shape 1.2b] [--layers 4] [--contexts 1024 4096 16384] [--repeats 7]

Writes a random checkpoint of the real shape (cut to `--layers`), exports it for
onnxruntime twice (`--logits last`; a growing cache, and an in-place one sized for
the largest context), and times one decode step at each context with the past fed
directly (random values: the step's cost does not depend on them). Repetitions
are interleaved across the two exports and the contexts, so machine drift hits
all alike; each figure is a median. The growing cache pays concat(past, new) into
a fresh present every step; the in-place one writes one slot and reads the filled
ones. Results: OUT/kv.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.contract import ATTENTION_MASK, CONFIG_FILE, INPUT_IDS, POSITION_IDS, past_names
from exaone4.exporter.export import ExportOptions, export_checkpoint
from exaone4.exporter.runners import OrtRunner

ROOT = Path(__file__).resolve().parents[1]


def export_both(out: Path, shape: str, layers: int, max_context: int) -> dict[str, ExportDir]:
    checkpoint = out / "checkpoint"
    if not (checkpoint / CONFIG_FILE).is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_checkpoint.py"), shape, str(checkpoint),
                        "--layers", str(layers)], check=True)
    kinds = {"growing": dict(kv_cache="full"), "in-place": dict(kv_cache="static", max_context=max_context, kv_budget_gib=64)}
    exports = {}
    for name, options in kinds.items():
        directory = out / name
        if not ExportDir.exists(directory):
            export_checkpoint(checkpoint, directory, ExportOptions(target="ort", logits="last", force=True, **options))
        exports[name] = ExportDir.open(directory, check_files=False)
    return exports


class Stepper:
    """One export at one context: a past of `context - 1` positions, then timed decode steps."""

    def __init__(self, runner: OrtRunner, export: ExportDir, context: int, static: bool) -> None:
        layout = export.cache_layout()
        self.runner, self.context, self.static = runner, context, static
        rng = np.random.default_rng(0)
        length = export.manifest.max_context if static else context - 1
        shape = (1, layout.num_kv_heads, length, layout.head_dim)
        self.caches = {name: rng.standard_normal(shape).astype(layout.dtype) for name in past_names(layout.num_layers)}
        self.feeds = {INPUT_IDS: np.array([[7]]), ATTENTION_MASK: np.ones((1, context), np.int64),
                      POSITION_IDS: np.array([[context - 1]])}

    def step(self) -> float:
        start = time.perf_counter()
        if self.static:
            self.runner.infer_in_place(self.feeds, self.caches)  # writes slot context - 1 again: same cost every time
        else:
            self.runner.infer({**self.feeds, **self.caches})  # the present is a fresh concat; the past stays
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", default="1.2b")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    exports = export_both(args.out, args.shape, args.layers, max(args.contexts))
    runners = {name: OrtRunner(export.model_path, static_context=export.static_context) for name, export in exports.items()}
    for runner in runners.values():
        runner.open()
    steppers = {(name, context): Stepper(runners[name], exports[name], context, name == "in-place")
                for context in args.contexts for name in exports}
    for stepper in steppers.values():  # warm-up
        stepper.step()
    times: dict[tuple[str, int], list[float]] = {key: [] for key in steppers}
    for _ in range(args.repeats):
        for key, stepper in steppers.items():
            times[key].append(stepper.step())
    rows = [{"cache": name, "context": context, "decode_ms": 1000 * statistics.median(times[(name, context)]),
             "min_ms": 1000 * min(times[(name, context)]), "max_ms": 1000 * max(times[(name, context)]),
             "repeats": args.repeats} for (name, context) in steppers]
    base = {row["cache"]: row["decode_ms"] for row in rows if row["context"] == min(args.contexts)}
    for row in rows:
        row["vs_own_first_context"] = row["decode_ms"] / base[row["cache"]]
    result = {"shape": args.shape, "layers": args.layers, "rows": rows}
    (args.out / "kv.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"| cache | context | decode ms/token, median of {args.repeats} (min-max) | vs its own {min(args.contexts)} |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['cache']} | {row['context']} | {row['decode_ms']:.1f} ({row['min_ms']:.1f}-{row['max_ms']:.1f}) "
              f"| {row['vs_own_first_context']:.2f}x |")


if __name__ == "__main__":
    main()
