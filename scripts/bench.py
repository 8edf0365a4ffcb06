"""Speed and memory of our exports against what users run instead, in one run, against the memory roofline.

    python scripts/bench.py --shape 1.2b --layers 8 --out docs/bench/1.2b-8l     # the headline run
    python scripts/bench.py --shape tiny --out docs/bench/tiny                    # the bundled model
    python scripts/bench.py --window-only --out docs/bench/window                 # 32B-shape KV memory

Sections, all on the same machine in the same run:

1. export: wall time and peak RSS of our export (fake-tensor trace, streamed
   weights) and of the naive transformers export (fp32 model, `torch.onnx.export`,
   `use_cache=False`), each in a fresh process;
2. runtime, per context (batch 1; batch 4 for our ort export): prefill tokens/s
   and decode ms/token, repetitions interleaved round-robin across backends, for
   - torch:        our reference PyTorch model with its explicit KV cache
   - transformers: transformers' eager `generate` with its DynamicCache
   - naive-onnx:   the naive export in onnxruntime, every step recomputing the sequence
   - ort, standard: our exports (`--logits last`, what generation uses) in onnxruntime
   - ort-all-logits: our ort export with every position's logits (the IO contract default)
   and the memory roofline: weight + KV bytes read per decode token / the best read bandwidth
   measured in this run (a GEMV or reduction over 1 GiB, re-measured before each row);
3. engines: TensorRT fp16 and fp8 build times with the available provider;
4. window cache (`--window`): KV memory of the full and bounded caches for the
   32B shape cut to a few layers, at 8K and 32K context (scripts/bench_window.py).

Writes results.json, table.md and chart.png under --out. Ratios are the headline:
these machines are shared and noisy.
"""

from __future__ import annotations

import os

# Interleaved backends share the cores: torch's OpenMP workers must sleep, not spin, between their
# parallel regions, or they steal the cores from the onnxruntime run that follows (seen: 3x on the
# bundled model's decode). Set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_export_memory import NAIVE, OURS, ensure_checkpoint, measure
from bench_measure import (
    generate_repetition,
    interleaved,
    load_transformers,
    memory_bandwidth,
    naive_repetition,
    session_repetition,
)
from bench_report import write_report
from bench_window import window_memory
from make_random_checkpoint import make_config

from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.contract import MODEL_FILE
from exaone4.exporter.export import ExportOptions, export_checkpoint, lower_export
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.runners import CacheLayout, OrtRunner, TorchRunner
from exaone4.exporter.tiny import TINY_DIR

RUNTIME_BACKENDS = ("torch", "transformers", "naive-onnx", "ort", "standard", "ort-all-logits")


def export_section(checkpoint_dir: Path, work: Path, skip: set[str]) -> dict:
    """Our canonical export and the naive one, each timed in a fresh process; then our lowerings."""
    result = {"ours": measure(OURS, str(checkpoint_dir), str(work / "canonical"), "canonical", "float32", "full")}
    if "error" in result["ours"]:
        raise SystemExit(f"our export failed: {result['ours']['error']}")
    if "naive-onnx" not in skip:
        result["naive"] = measure(NAIVE, str(checkpoint_dir), str(work / "naive"))
    for name, target, logits in (("ort", "ort", "last"), ("standard", "standard", "last"), ("ort-all-logits", "ort", "all")):
        if name in skip:
            continue
        start = time.perf_counter()
        lower_export(work / "canonical", work / name, target, force=True, logits=logits)
        result[f"lower_{name}_s"] = time.perf_counter() - start
    return result


def runtime_section(checkpoint_dir: Path, work: Path, args, bandwidth: float) -> list[dict]:
    """Prefill and decode of every backend at every context, with the roofline fraction.

    All backends are loaded at once and measured round-robin (`interleaved`);
    `--sequential` loads one at a time instead, for models too big to hold several copies.
    """
    checkpoint = Checkpoint.open(checkpoint_dir)
    config = checkpoint.config
    layout = CacheLayout.of(config)
    weight_bytes = 4 * config.parameter_count()
    rng = np.random.default_rng(0)
    rows = []
    for context in args.contexts:
        context = min(context, config.max_position_embeddings - args.decode - 1)
        for batch in args.batches:
            ids = rng.integers(16, config.vocab_size, (batch, context))
            kv_bytes = batch * 4 * 2 * config.num_layers * config.num_kv_heads * config.head_dim * (context + args.decode // 2)
            bandwidth = max(bandwidth, memory_bandwidth()["read"])  # re-measured per row: the best rate seen so far
            roofline_ms = 1000 * (weight_bytes + kv_bytes) / bandwidth
            names = [n for n in RUNTIME_BACKENDS if n not in args.skip and (batch == 1 or n == "ort")]
            groups = [[n] for n in names] if args.sequential else [names]
            backends = {}
            for group in groups:
                loaded = {name: _load_backend(name, checkpoint, checkpoint_dir, work, args) for name in group}
                repetitions = {name: _repetition(name, backend, layout, ids, args) for name, backend in loaded.items()}
                backends.update(interleaved(repetitions, args.reps, ids.size))
                del loaded, repetitions
            for result in backends.values():
                result["roofline_fraction"] = roofline_ms / result["decode_ms_per_token"]
            rows.append({"context": context, "batch": batch, "roofline_ms_per_token": roofline_ms, "read_bandwidth": bandwidth,
                         "backends": {n: backends[n] for n in names}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _load_backend(name: str, checkpoint, checkpoint_dir: Path, work: Path, args):
    if name == "torch":
        return TorchRunner(load_reference_model(checkpoint))
    if name == "transformers":
        return load_transformers(checkpoint_dir)
    if name == "naive-onnx":
        import onnxruntime as ort

        return ort.InferenceSession(str(work / "naive" / MODEL_FILE), providers=["CPUExecutionProvider"])
    runner = OrtRunner(work / name, threads=args.threads)
    runner.open()
    return runner


def _repetition(name: str, backend, layout, ids, args):
    if name == "transformers":
        return generate_repetition(backend, ids, args.decode)
    if name == "naive-onnx":
        return naive_repetition(backend, ids, min(args.decode, args.naive_decode))
    return session_repetition(backend, layout, ids, args.decode)


def engine_section(checkpoint_dir: Path, work: Path) -> dict:
    """fp16 and fp8 TensorRT build times (export, quantize and build each timed)."""
    from exaone4.exporter.quantize import quantize_export
    from exaone4.exporter.trt.build import BuildOptions, build_engine
    from exaone4.exporter.trt.provider import load_tensorrt

    try:
        _, provider = load_tensorrt()
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: the other sections stand
        return {"error": f"no TensorRT provider: {exc}"}
    timings = {"provider": provider}
    start = time.perf_counter()
    export_checkpoint(checkpoint_dir, work / "trt-fp16", ExportOptions(target="trt", dtype="float16", force=True))
    timings["export_fp16_s"] = time.perf_counter() - start
    start = time.perf_counter()
    quantize_export(work / "trt-fp16", checkpoint_dir, work / "trt-fp8", force=True)
    timings["quantize_fp8_s"] = time.perf_counter() - start
    positions = Checkpoint.open(checkpoint_dir).config.max_position_embeddings
    options = dict(max_context=min(4096, positions), max_prefill=min(1024, positions), force=True)
    for precision in ("fp16", "fp8"):
        start = time.perf_counter()
        build = build_engine(work / f"trt-{precision}", work / f"engine-{precision}", BuildOptions(precision=precision, **options))
        timings[f"build_{precision}_s"] = time.perf_counter() - start
        timings[f"engine_{precision}_bytes"] = build.engine_bytes
    return timings


def window_section(work: Path, layers: int, contexts: list[int]) -> dict:
    """Full vs window cache memory on the 32B shape cut to `layers` layers, fp16."""
    checkpoint_dir = ensure_checkpoint(work, "32b", layers)
    exports, export_runs = {}, {}
    for kind in ("full", "window"):  # each export timed in a fresh process: the 32B-shape export memory check
        exports[kind] = work / f"32b-{layers}l-ort-fp16-{kind}"
        export_runs[kind] = measure(OURS, str(checkpoint_dir), str(exports[kind]), "ort", "float16", kind)
        print(json.dumps({"export": kind, **export_runs[kind]}), flush=True)
    rows = window_memory(exports, contexts, make_config("32b", None))
    return {"checkpoint": checkpoint_dir.name, "exports": export_runs, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["tiny", "1.2b"], default="tiny")
    parser.add_argument("--layers", type=int, default=None, help="cut the 1.2B shape to its first N layers")
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch > 1 runs the ort export only")
    parser.add_argument("--decode", type=int, default=8)
    parser.add_argument("--naive-decode", type=int, default=3, help="decode tokens for the naive export (each one a full prefill)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--sequential", action="store_true", help="load one backend at a time (big models)")
    parser.add_argument("--skip", nargs="*", default=[], help=f"leave out: {', '.join(RUNTIME_BACKENDS)}, engines")
    parser.add_argument("--window", action="store_true", help="also measure the window-cache memory (32B shape)")
    parser.add_argument("--window-only", action="store_true", help="measure the window-cache memory only")
    parser.add_argument("--window-layers", type=int, default=4)
    parser.add_argument("--window-contexts", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--work", type=Path, default=Path("/tmp/exaone4-bench"))
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, table.md, chart.png")
    args = parser.parse_args()
    args.skip = set(args.skip)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    bandwidth = memory_bandwidth()
    results = {"machine": machine(), "command": " ".join(sys.argv), "bandwidth_bytes_per_s": bandwidth["read"],
               "copy_bandwidth_bytes_per_s": bandwidth["copy"]}

    if not args.window_only:
        checkpoint_dir = TINY_DIR if args.shape == "tiny" else ensure_checkpoint(args.work, args.shape, args.layers)
        work = args.work / f"run-{checkpoint_dir.name}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        config = Checkpoint.open(checkpoint_dir).config
        results["checkpoint"] = {"name": checkpoint_dir.name, "parameters": config.parameter_count(),
                                 "layers": config.num_layers, "weight_bytes_fp32": 4 * config.parameter_count()}
        results["export"] = export_section(checkpoint_dir, work, args.skip)
        results["runtime"] = runtime_section(checkpoint_dir, work, args, results["bandwidth_bytes_per_s"])
        write_report(results, args.out)  # after each section: a later failure keeps what was measured
        if "engines" not in args.skip:
            results["engines"] = engine_section(checkpoint_dir, work)
            write_report(results, args.out)
        shutil.rmtree(work, ignore_errors=True)
    if args.window or args.window_only:
        results["window"] = window_section(args.work, args.window_layers, args.window_contexts)
        write_report(results, args.out)


def machine() -> str:
    import onnxruntime

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, Python {platform.python_version()}, "
            f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")


if __name__ == "__main__":
    main()
