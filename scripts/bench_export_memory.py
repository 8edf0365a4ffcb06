"""Peak memory and wall time of exporting real-shape checkpoints: ours (streaming) vs naive.

    python scripts/bench_export_memory.py --work /tmp/bench [--naive] [--json out.json]

Makes (once) a random EXAONE-4.0-1.2B-shape checkpoint and a 32B-shape one cut to
4 layers, then exports each in a fresh process and reads that process's peak RSS:

- ours: `exaone4-export export` (fake-tensor trace, weights streamed from
  safetensors into model.onnx.data one tensor at a time);
- naive (with --naive, 1.2B only): what a user can do today, transformers'
  `Exaone4ForCausalLM` loaded in fp32 and `torch.onnx.export(..., dynamo=True)`
  with `use_cache=False` (no KV cache: the export fails with one).

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The peak RSS of this process since its exec: VmHWM belongs to the new address space, whereas
# ru_maxrss keeps the parent's peak across fork + exec (a parent that held 2 GB reports 2 GB).
PEAK_RSS = """
def peak_rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
"""

OURS = PEAK_RSS + """
import sys, time, json
from pathlib import Path
from exaone4.exporter.export import ExportOptions, export_checkpoint
start = time.perf_counter()
kv_cache = sys.argv[5] if len(sys.argv) > 5 else "full"
export_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]), ExportOptions(target=sys.argv[3], dtype=sys.argv[4], kv_cache=kv_cache,
                  force=True))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_kb": peak_rss_kb()}))
"""

NAIVE = PEAK_RSS + """
import sys, time, json, os, torch, warnings
warnings.simplefilter("ignore")
from transformers import AutoModelForCausalLM
start = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
model.config.use_cache = False
ids = torch.ones(1, 8, dtype=torch.long)
seq = torch.export.Dim("sequence", max=4096)
os.makedirs(sys.argv[2], exist_ok=True)
torch.onnx.export(model, (ids,), os.path.join(sys.argv[2], "model.onnx"), dynamo=True, external_data=True,
                  dynamic_shapes=({1: seq},))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_kb": peak_rss_kb()}))
"""


def measure(code: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def ensure_checkpoint(work: Path, shape: str, layers: int | None) -> Path:
    name = f"exaone4-{shape}" + (f"-{layers}l" if layers else "")
    path = work / name
    if not (path / "model.safetensors.index.json").is_file():
        cmd = [sys.executable, str(HERE / "make_random_checkpoint.py"), shape, str(path)]
        if layers:
            cmd += ["--layers", str(layers)]
        subprocess.run(cmd, check=True)
    return path


def size_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/exaone4-bench"))
    parser.add_argument("--naive", action="store_true", help="also measure the naive transformers export (1.2B)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", choices=["1.2b", "32b"], default=None, help="measure one checkpoint only")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    cases = [("1.2b", None, "ort", "float32"), ("32b", 4, "ort", "float16")]
    cases = [case for case in cases if args.only in (None, case[0])]
    rows = []
    for shape, layers, target, dtype in cases:
        checkpoint = ensure_checkpoint(args.work, shape, layers)
        out = args.work / f"{checkpoint.name}-{target}-{dtype}"
        ours = measure(OURS, str(checkpoint), str(out), target, dtype)
        row = {"checkpoint": checkpoint.name, "checkpoint_gb": round(size_gb(checkpoint), 2), "target": target,
               "dtype": dtype, "ours": ours, "export_gb": round(size_gb(out), 2) if out.exists() else None}
        if args.naive and shape == "1.2b":
            row["naive"] = measure(NAIVE, str(checkpoint), str(args.work / f"{checkpoint.name}-naive"))
        rows.append(row)
        print(json.dumps(row), flush=True)

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"\nmachine: {machine}\n")
    print("| checkpoint | on disk | export | ours: peak RSS | ours: wall | naive: peak RSS | naive: wall |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ours, naive = row["ours"], row.get("naive", {})
        fmt = lambda r: (  # noqa: E731
            (f"{r['peak_rss_kb'] / 2**20:.2f} GB", f"{r['seconds']:.0f} s") if "seconds" in r else (r.get("error", "not run"), "")
        )
        o, n = fmt(ours), fmt(naive)
        print(f"| {row['checkpoint']} | {row['checkpoint_gb']} GB bf16 | {row['target']} {row['dtype']}, "
              f"{row['export_gb']} GB | {o[0]} | {o[1]} | {n[0]} | {n[1]} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
