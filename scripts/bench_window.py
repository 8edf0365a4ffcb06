"""KV-cache memory of the full and the bounded window cache (scripts/bench.py, window section).

Each (cache kind, context) runs in a fresh process: it opens the ort export,
feeds a cache already at `context - 1` positions (random values: memory and
time do not depend on them; a sliding layer of the window export gets its W - 1
slots) and runs one decode step. It reports the bytes of the presents that step
returns, i.e. the cache a server holds per sequence at that context, the step's
time, and the process's peak RSS (weights included). The whole-model figure
scales the measured per-layer bytes to the checkpoint's own layer counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench_export_memory import PEAK_RSS

STEP = PEAK_RSS + """
import json, sys, time
import numpy as np, onnxruntime as ort
export, context = sys.argv[1], int(sys.argv[2])
from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.contract import past_names, present_name
exported = ExportDir.open(export, check_files=False)  # torch-free: the RSS measured is onnxruntime's
manifest, config = exported.manifest, exported.config
options = ort.SessionOptions(); options.log_severity_level = 3
session = ort.InferenceSession(str(exported.model_path), options, providers=["CPUExecutionProvider"])
rss_loaded = peak_rss_kb()
caps = manifest.window_past_caps()
feeds = {"input_ids": np.array([[7]]), "attention_mask": np.ones((1, context), np.int64),
         "position_ids": np.array([[context - 1]])}
for name in past_names(config.num_layers):
    shape = (1, config.num_kv_heads, min(context - 1, caps.get(name, context - 1)), config.head_dim)
    feeds[name] = np.random.default_rng(0).standard_normal(shape).astype(manifest.dtype)
start = time.perf_counter()
outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
seconds = time.perf_counter() - start
per_layer = {layer.kind: int(outputs[present_name(layer.index, "key")].nbytes * 2) for layer in manifest.layers}
print(json.dumps({"kv_bytes": sum(v.nbytes for k, v in outputs.items() if k.startswith("present.")),
                  "kv_bytes_per_layer": per_layer, "step_s": seconds, "rss_loaded_kb": rss_loaded,
                  "peak_rss_kb": peak_rss_kb()}))
"""


def measure_step(export_dir: Path, context: int) -> dict:
    """One decode step at `context` in a fresh process; the step's JSON line, or {"error": ...}."""
    result = subprocess.run([sys.executable, "-c", STEP, str(export_dir), str(context)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def whole_model_kv_bytes(per_layer: dict[str, int], full_config: dict) -> int:
    """The cache of the full-depth model: measured bytes per layer kind times that kind's layer count."""
    from exaone4.exporter.config import parse_config

    counts: dict[str, int] = {}
    for spec in parse_config(full_config).layers:
        counts[spec.kind.value] = counts.get(spec.kind.value, 0) + 1
    return sum(per_layer[kind] * n for kind, n in counts.items())


def window_memory(exports: dict[str, Path], contexts: list[int], full_config: dict) -> list[dict]:
    """Rows of {kind, context, measured figures, whole-model KV bytes} for each cache kind and context."""
    rows = []
    for context in contexts:
        for kind, export_dir in exports.items():
            row = {"kv_cache": kind, "context": context, **measure_step(export_dir, context)}
            if "kv_bytes_per_layer" in row:
                row["whole_model_kv_bytes"] = whole_model_kv_bytes(row["kv_bytes_per_layer"], full_config)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows
