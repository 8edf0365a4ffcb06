"""Ours against llama.cpp (and transformers) on the CPU, side by side in one run.

    scripts/setup_llama_cpp.sh .bench/llama          # once: llama-cpp-python built from source (~10-25 min)
    python scripts/bench_cpu.py OUT [--layers 30] [--contexts 1024 4096 16384] [--repeats 5] [--llama-env .bench/llama]

One random checkpoint of the EXAONE-4.0-1.2B shape (scripts/make_random_checkpoint.py)
feeds every backend: our `ort` exports with the in-place cache and last-position
logits (fp32, int8, int4 with the tied lm_head at int8, and int4 throughout),
llama.cpp's GGUF converted from the same checkpoint by llama.cpp's own converter
(F32, then Q8_0 / Q4_0 by its quantizer), and transformers in fp32.

Each backend is a worker process (scripts/bench_cpu_worker.py) loaded once. Backends
are measured in groups that fit in memory together, ours next to llama.cpp at the
same weight precision; within a group every task (prefill, then decode at each
context) goes round-robin over the workers, one at a time, so drift hits all alike.
A repetition during which other processes used more than a tenth of a core (from
/proc/stat, less the worker's own time) is discarded and run again. Each figure is
the median of the kept repetitions, with their min and max. Results: OUT/cpu.json
and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.contract import CONFIG_FILE

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "exaone4.exporter.cli"]
GGUF_TYPES = {"Q8_0": 7, "Q4_0": 2}  # llama_ftype values

CONVERT = r"""
import sys
import time
src = sys.argv[1]
sys.path[:0] = [src, src + "/gguf-py"]
import convert_hf_to_gguf as convert
from conversion import base
# The random checkpoint carries the bundled tokenizer, whose pre-tokenizer hash llama.cpp does not
# know; the graph is what is measured (token ids are fed directly), so any known BPE pre-tokenizer does.
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = ["convert_hf_to_gguf.py", sys.argv[2], "--outfile", sys.argv[3], "--outtype", "f32"]
convert.main()
"""


WORKER = ROOT / "scripts" / "bench_cpu_worker.py"
CONTENTION = 0.1  # cores used by other processes during a repetition beyond which it is discarded
RETRIES = 5  # runs of one repetition before a contended one is kept (and counted as such)
TRANSFORMERS_MAX_CONTEXT = 4096  # its decode cache is a torch tensor per layer; 16K adds minutes and little news


def busy_jiffies() -> int:
    """CPU time spent by everything on the machine (user, nice, system, irq, softirq, steal)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7))


def process_jiffies(pid: int) -> int:
    """utime + stime of a process, all its threads."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Worker:
    """A backend in its own process (bench_cpu_worker.py), answering (task, n) requests."""

    def __init__(self, name: str, python: str, kind: str, model: Path, context: int) -> None:
        self.name, self.model = name, model
        self.process = subprocess.Popen([python, str(WORKER), kind, str(model), str(context)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.process.stdout.readline())["ready"]

    def ask(self, task: str, n: int) -> dict:
        self.process.stdin.write(json.dumps([task, n]) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def measure(self, task: str, n: int) -> tuple[float, float]:
        """(seconds, other processes' cores during it), the lowest-contention of up to RETRIES runs."""
        best = (0.0, float("inf"))
        for _ in range(RETRIES):
            busy, own, mine, start = busy_jiffies(), process_jiffies(self.process.pid), process_jiffies(os.getpid()), time.time()
            seconds = self.ask(task, n)["seconds"]
            wall = time.time() - start
            other = busy_jiffies() - busy - (process_jiffies(self.process.pid) - own) - (process_jiffies(os.getpid()) - mine)
            cores = max(other, 0) / (os.sysconf("SC_CLK_TCK") * wall)
            if cores < best[1]:
                best = (seconds, cores)
            if cores <= CONTENTION:
                break
        return best

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def prepare_ours(out: Path, checkpoint: Path, context: int) -> dict[str, Path]:
    """Our exports: fp32 with the in-place cache, then int8 / int4 (lm_head int8) / int4 throughout from it."""
    exports = {"ours fp32": out / "ours-fp32"}
    if not ExportDir.exists(exports["ours fp32"]):
        subprocess.run([*CLI, "export", str(checkpoint), "-o", str(exports["ours fp32"]), "--target", "ort", "--kv-cache", "static",
                        "--max-context", str(context), "--logits", "last", "--quiet", "--force"], check=True)
    for name, options in QUANTIZED.items():
        target = out / name.replace(" ", "-").replace("(", "").replace(")", "")
        if not ExportDir.exists(target):
            subprocess.run([*CLI, "quantize", str(exports["ours fp32"]), "--checkpoint", str(checkpoint), "-o", str(target),
                            *options, "--quiet", "--force"], check=True)
        exports[name] = target
    return exports


def prepare_llama(out: Path, checkpoint: Path, env: Path) -> dict[str, Path]:
    python = str(env / "bin" / "python")
    f32 = out / "llama-F32.gguf"
    if not f32.is_file():
        subprocess.run([python, "-c", CONVERT, str(env / "src"), str(checkpoint), str(f32)], check=True)
    models = {"llama.cpp F32": f32}
    for name, ftype in GGUF_TYPES.items():
        target = out / f"llama-{name}.gguf"
        if not target.is_file():
            subprocess.run([python, "-c", "import sys, llama_cpp; p = llama_cpp.llama_model_quantize_default_params(); "
                            f"p.ftype = {ftype}; p.nthread = 2; "
                            "assert llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p) == 0",
                            str(f32), str(target)], check=True)
        models[f"llama.cpp {name}"] = target
    return models


QUANTIZED = {
    "ours int8": ["--weights", "int8"],
    "ours int4": ["--weights", "int4"],
    "ours int4 (lm_head int4)": ["--weights", "int4", "--lm-head", "int4"],
}
# Backends measured together: each group fits in 24 GiB with its caches at 16K.
GROUPS = [
    ["ours fp32", "llama.cpp F32"],
    ["ours int8", "llama.cpp Q8_0", "ours int4", "ours int4 (lm_head int4)", "llama.cpp Q4_0"],
    ["transformers fp32"],
]


def measure_group(workers: list[Worker], tasks: list[tuple[str, int]], repeats: int, results: dict) -> None:
    """Each task: one untimed warm-up per worker (llama.cpp fills its cache there), then repeats round-robin."""
    for task in tasks:
        for worker in workers:
            worker.ask(*task)
        for _ in range(repeats):
            for worker in workers:
                seconds, cores = worker.measure(*task)
                results[worker.name]["samples"].setdefault(f"{task[0]} {task[1]}", []).append(seconds)
                results[worker.name]["contention"].append(cores)
        print(f"  {task[0]} {task[1]}: " + ", ".join(
            f"{w.name} {statistics.median(results[w.name]['samples'][f'{task[0]} {task[1]}']) * 1000:.1f} ms" for w in workers),
            flush=True)


def summary(name: str, result: dict, prefill: int) -> dict:
    row = {"backend": name, "size_mib": result["size_mib"], "peak_rss_mib": result["peak_rss_mib"],
           "contended_repetitions": sum(c > CONTENTION for c in result["contention"])}
    for key, samples in result["samples"].items():
        task, n = key.split()
        values = [int(n) / s for s in samples] if task == "prefill" else [1000 * s for s in samples]
        unit = "tokens_per_s" if task == "prefill" else "ms"
        row[f"{task}_{n}_{unit}"] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return row


def table(rows: list[dict], prefill: int, contexts: list[int]) -> str:
    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        return "-" if value is None else f"{value['median']:.1f} ({value['min']:.1f}-{value['max']:.1f})"

    head = f"| backend | size MiB | peak RSS MiB | prefill {prefill} tok/s | " + " | ".join(f"decode ms at {c}" for c in contexts) + " |"
    lines = [head, "|---" * (4 + len(contexts)) + "|"]
    for row in rows:
        decode = " | ".join(cell(row, f"decode_{c}_ms") for c in contexts)
        lines.append(f"| {row['backend']} | {row['size_mib']:.0f} | {row['peak_rss_mib']:.0f} | "
                     f"{cell(row, f'prefill_{prefill}_tokens_per_s')} | {decode} |")
    return "\n".join(lines)


def chart(rows: list[dict], contexts: list[int], path: Path) -> None:
    """Decode ms/token against context, one line per backend (min-max as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for row in rows:
        points = [(c, row[f"decode_{c}_ms"]) for c in contexts if f"decode_{c}_ms" in row]
        if not points:
            continue
        xs, values = [c for c, _ in points], [v for _, v in points]
        errors = [[v["median"] - v["min"] for v in values], [v["max"] - v["median"] for v in values]]
        style = "-" if row["backend"].startswith("ours") else "--" if row["backend"].startswith("llama") else ":"
        axis.errorbar(xs, [v["median"] for v in values], yerr=errors, fmt=style + "o", capsize=3, label=row["backend"])
    axis.set_xscale("log", base=2)
    axis.set_xticks(contexts, [str(c) for c in contexts])
    axis.set_xlabel("context (tokens)")
    axis.set_ylabel("decode ms/token (median, min-max)")
    axis.set_title("EXAONE-4.0-1.2B shape, 2 CPU cores: ours (solid), llama.cpp (dashed), transformers (dotted)", fontsize=10)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--prefill", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--llama-env", type=Path, default=ROOT / ".bench" / "llama")
    parser.add_argument("--no-transformers", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint"
    if not (checkpoint / CONFIG_FILE).is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_checkpoint.py"), "1.2b", str(checkpoint),
                        "--layers", str(args.layers)], check=True)
    context = max(args.contexts + [args.prefill]) + 64
    models = {name: ("ours", sys.executable, path) for name, path in prepare_ours(args.out, checkpoint, context).items()}
    if (args.llama_env / ".complete").is_file():
        python = str(args.llama_env / "bin" / "python")
        models |= {name: ("llama", python, path) for name, path in prepare_llama(args.out, checkpoint, args.llama_env).items()}
    else:
        print(f"llama.cpp: not measured ({args.llama_env} has no finished build; run scripts/setup_llama_cpp.sh)")
    if not args.no_transformers:
        models["transformers fp32"] = ("transformers", sys.executable, checkpoint)
    results = {}
    for group in GROUPS:
        names = [name for name in group if name in models]
        if not names:
            continue
        print(f"group: {', '.join(names)}", flush=True)
        workers = [Worker(name, models[name][1], models[name][0], models[name][2], context) for name in names]
        for worker in workers:
            results[worker.name] = {"samples": {}, "contention": [], "size_mib": size_mib(worker.model)}
        limit = TRANSFORMERS_MAX_CONTEXT if names == ["transformers fp32"] else max(args.contexts)
        tasks = [("prefill", args.prefill)] + [("decode", c) for c in args.contexts if c <= limit]
        measure_group(workers, tasks, args.repeats, results)
        for worker in workers:
            results[worker.name]["peak_rss_mib"] = worker.ask("memory", 0)["peak_rss_mib"]
            worker.close()
    rows = [summary(name, result, args.prefill) for name, result in results.items()]
    (args.out / "cpu.json").write_text(json.dumps({"layers": args.layers, "repeats": args.repeats, "contention_limit_cores": CONTENTION,
                                                   "rows": rows, "raw": results}, indent=2) + "\n")
    print(table(rows, args.prefill, args.contexts))
    chart(rows, args.contexts, args.out / "chart.png")


if __name__ == "__main__":
    main()
