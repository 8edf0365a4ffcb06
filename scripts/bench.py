"""Decode latency and prefill throughput of every CPU path, in one run, against the memory roofline.

    python scripts/bench.py [--checkpoint bundled:tiny] [--contexts 128 1024] [--reps 5] [--json out.json]

For each context length (batch 1): prefill tokens/s over a prompt of that length
and decode latency per token for `--decode` tokens after it, medians over
`--reps` repetitions after a warm-up, min and max alongside. Backends, on the
same machine in the same run:

- torch:        our reference PyTorch model with its explicit KV cache
- transformers: transformers' Exaone4ForCausalLM (eager attention) with its DynamicCache
- naive-onnx:   transformers exported with torch.onnx.export and use_cache=False, what users
                have today: every decode step recomputes the whole sequence
- ort, standard: our exports in onnxruntime, KV cache fed back each step

The roofline is the time to read every weight once plus the KV cache per decode
token at the memory bandwidth measured in this run (a large numpy copy). Ratios,
not absolute times, are the headline: machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, KVCacheSession, OrtRunner, TorchRunner, TransformersRunner
from exaone4.exporter.tiny import BUNDLED_NAME, TINY_DIR


def memory_bandwidth(bytes_: int = 1 << 30, reps: int = 5) -> float:
    """Bytes per second of a large copy (read + write counted)."""
    source = np.ones(bytes_ // 8, dtype=np.float64)
    target = np.empty_like(source)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - start)
    return 2 * source.nbytes / statistics.median(times)


def measure_session(runner, layout, ids: np.ndarray, decode: int, reps: int) -> dict:
    """Prefill and per-token decode times (median, min, max) with the KV cache."""
    prefill, per_token = [], []
    for rep in range(reps + 1):  # the first repetition warms up
        session = KVCacheSession(runner, layout)
        start = time.perf_counter()
        logits = session.prefill(ids)
        middle = time.perf_counter()
        for _ in range(decode):
            logits = session.decode(logits[:, -1].argmax(-1))
        end = time.perf_counter()
        if rep:
            prefill.append(middle - start)
            per_token.append((end - middle) / decode)
    return _summary(ids.shape[1], prefill, per_token)


def measure_naive(session, ids: np.ndarray, decode: int, reps: int) -> dict:
    """The no-cache export: each new token runs the whole sequence again."""
    prefill, per_token = [], []
    for rep in range(reps + 1):
        sequence = ids
        start = time.perf_counter()
        logits = session.run(None, {"input_ids": sequence})[0]
        middle = time.perf_counter()
        for _ in range(decode):
            sequence = np.concatenate((sequence, logits[:, -1:].argmax(-1)), axis=1)
            logits = session.run(None, {"input_ids": sequence})[0]
        end = time.perf_counter()
        if rep:
            prefill.append(middle - start)
            per_token.append((end - middle) / decode)
    return _summary(ids.shape[1], prefill, per_token)


def _summary(tokens: int, prefill: list[float], per_token: list[float]) -> dict:
    return {
        "prefill_tokens_per_s": tokens / statistics.median(prefill),
        "prefill_s": [min(prefill), statistics.median(prefill), max(prefill)],
        "decode_ms_per_token": 1000 * statistics.median(per_token),
        "decode_ms": [1000 * min(per_token), 1000 * statistics.median(per_token), 1000 * max(per_token)],
    }


def naive_export(checkpoint_dir: Path, out: Path) -> Path:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.float32).eval()
    model.config.use_cache = False
    path = out / "naive.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.ones(1, 8, dtype=torch.long),), str(path), dynamo=True,
                          dynamic_shapes=({1: torch.export.Dim("sequence", max=4096)},))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=BUNDLED_NAME)
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--decode", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip", nargs="*", default=[], help="backends to leave out")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint_dir = TINY_DIR if args.checkpoint == BUNDLED_NAME else Path(args.checkpoint)
    checkpoint = Checkpoint.open(checkpoint_dir)
    config = checkpoint.config
    work = Path(tempfile.mkdtemp(prefix="exaone4-bench-"))
    export_checkpoint(checkpoint_dir, work / "canonical", ExportOptions(target="canonical"))
    for target in ("ort", "standard"):
        lower_export(work / "canonical", work / target, target)

    bandwidth = memory_bandwidth()
    weight_bytes = 4 * config.parameter_count()
    layout = CacheLayout.of(config)
    runners = {"torch": TorchRunner(load_reference_model(checkpoint)), "transformers": TransformersRunner(checkpoint_dir),
               "ort": OrtRunner(work / "ort", threads=args.threads), "standard": OrtRunner(work / "standard", threads=args.threads)}
    naive = None
    if "naive-onnx" not in args.skip:
        import onnxruntime as ort

        naive = ort.InferenceSession(str(naive_export(checkpoint_dir, work)), providers=["CPUExecutionProvider"])
    results = []
    rng = np.random.default_rng(0)
    for context in args.contexts:
        context = min(context, config.max_position_embeddings - args.decode - 1)
        ids = rng.integers(16, config.vocab_size, (1, context))
        kv_bytes = 4 * 2 * config.num_layers * config.num_kv_heads * config.head_dim * (context + args.decode // 2)
        roofline_ms = 1000 * (weight_bytes + kv_bytes) / bandwidth
        row = {"context": context, "roofline_ms_per_token": roofline_ms, "backends": {}}
        for name, runner in runners.items():
            if name in args.skip:
                continue
            with runner:
                row["backends"][name] = measure_session(runner, layout, ids, args.decode, args.reps)
        if naive is not None:
            row["backends"]["naive-onnx"] = measure_naive(naive, ids, args.decode, args.reps)
        for result in row["backends"].values():
            result["roofline_fraction"] = roofline_ms / result["decode_ms_per_token"]
        results.append(row)
        print(json.dumps(row), flush=True)

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {bandwidth / 1e9:.1f} GB/s copy bandwidth, torch {torch.__version__}"
    print(f"\nmachine: {machine}; weights {weight_bytes / 1e6:.1f} MB fp32\n")
    print("| context | backend | prefill tok/s | decode ms/token (min-max) | decode time vs ort | roofline fraction |")
    print("|---|---|---|---|---|---|")
    for row in results:
        ort_ms = row["backends"].get("ort", {}).get("decode_ms_per_token")
        for name, r in row["backends"].items():
            speedup = f"{r['decode_ms_per_token'] / ort_ms:.2f}x" if ort_ms else "-"
            print(f"| {row['context']} | {name} | {r['prefill_tokens_per_s']:.0f} | {r['decode_ms_per_token']:.2f} "
                  f"({r['decode_ms'][0]:.2f}-{r['decode_ms'][2]:.2f}) | {speedup} | {r['roofline_fraction']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
