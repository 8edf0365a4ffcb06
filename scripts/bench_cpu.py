"""Ours against llama.cpp on the CPU, side by side in one run: decode ms/token and prefill tok/s per precision.

    scripts/setup_llama_cpp.sh .bench/llama          # once: llama-cpp-python built from source (~10 min)
    python scripts/bench_cpu.py OUT [--layers 30] [--contexts 1024 4096] [--repeats 5] [--llama-env .bench/llama]

One random checkpoint of the EXAONE-4.0-1.2B shape (scripts/make_random_checkpoint.py)
feeds both sides: our `ort` exports with the in-place cache and last-position
logits (fp32, and int8 / int4 when `quantize --weights` is available), and
llama.cpp's GGUF converted from the same checkpoint with llama.cpp's own converter
(F32, then Q8_0 / Q4_0 with its quantizer). Every backend lives in its own worker
process, loaded once; the measurements go round-robin over the workers, one
at a time, so drift hits all alike, and each figure is a median over repetitions.

Decode at a context c is one token on top of c - 1 cached positions: ours fills its
in-place buffers with random values (cost does not depend on them), llama.cpp
prefills c - 1 tokens once (untimed) and re-decodes position c - 1 each repetition.
Prefill is `--prefill` tokens from an empty cache. Results: OUT/cpu.json and a
Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.contract import CONFIG_FILE

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "exaone4.exporter.cli"]
GGUF_TYPES = {"Q8_0": 7, "Q4_0": 2}  # llama_ftype values

OURS_WORKER = r"""
import json, sys, time
import numpy as np
from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.runners import OrtRunner
export = ExportDir.open(sys.argv[1], check_files=False)
runner = OrtRunner(export.model_path, static_context=export.static_context); runner.open()
layout, rng = export.cache_layout(), np.random.default_rng(0)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    kind, n = json.loads(line)
    session = runner.new_session(layout)
    if kind == "prefill":
        ids = rng.integers(16, export.config.vocab_size, (1, n))
        start = time.perf_counter(); session.prefill(ids); took = time.perf_counter() - start
    else:  # decode one token at context n
        session.prefill(np.array([[7]]))
        for buffer in session.caches.values():
            buffer[:, :, : n - 1] = rng.standard_normal(buffer[:, :, : n - 1].shape).astype(buffer.dtype)
        session.filled[:] = n - 1; session.width = n - 1
        start = time.perf_counter(); session.decode(np.array([7])); took = time.perf_counter() - start
    print(json.dumps({"seconds": took}), flush=True)
"""

LLAMA_WORKER = r"""
import json, sys, time
import numpy as np
from llama_cpp import Llama
model = Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=2, n_threads_batch=2, n_batch=512, verbose=False)
rng, filled = np.random.default_rng(0), 0
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    kind, n = json.loads(line)
    if kind == "prefill":
        model.reset(); ids = rng.integers(16, 102400, n).tolist()
        start = time.perf_counter(); model.eval(ids); took = time.perf_counter() - start; filled = 0
    else:
        if filled != n - 1:  # bring the cache to n - 1 positions once, untimed
            model.reset(); model.eval(rng.integers(16, 102400, n - 1).tolist()); filled = n - 1
        model.n_tokens = n - 1  # eval() drops cached positions from n_tokens on: position n - 1 again
        start = time.perf_counter(); model.eval([7]); took = time.perf_counter() - start
    print(json.dumps({"seconds": took}), flush=True)
"""

CONVERT = r"""
import sys
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


class Worker:
    """A backend in its own process, answering ("prefill" | "decode", n) with the seconds taken."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.process.stdout.readline())["ready"]

    def time(self, kind: str, n: int) -> float:
        self.process.stdin.write(json.dumps([kind, n]) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def prepare_ours(out: Path, checkpoint: Path, context: int) -> dict[str, Path]:
    exports = {"ours fp32": out / "ours-fp32"}
    if not ExportDir.exists(exports["ours fp32"]):
        subprocess.run([*CLI, "export", str(checkpoint), "-o", str(exports["ours fp32"]), "--target", "ort", "--kv-cache", "static",
                        "--max-context", str(context), "--logits", "last", "--quiet", "--force"], check=True)
    for weights in ("int8", "int4"):
        target = out / f"ours-{weights}"
        if not ExportDir.exists(target):
            done = subprocess.run([*CLI, "quantize", str(exports["ours fp32"]), "--checkpoint", str(checkpoint), "-o", str(target),
                                   "--weights", weights, "--quiet", "--force"], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"ours {weights}: not measured ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})")
                continue
        exports[f"ours {weights}"] = target
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--prefill", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--llama-env", type=Path, default=ROOT / ".bench" / "llama")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint"
    if not (checkpoint / CONFIG_FILE).is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_checkpoint.py"), "1.2b", str(checkpoint),
                        "--layers", str(args.layers)], check=True)
    context = max(args.contexts + [args.prefill]) + 64
    ours = prepare_ours(args.out, checkpoint, context)
    llama = prepare_llama(args.out, checkpoint, args.llama_env) if (args.llama_env / ".complete").is_file() else {}
    workers = [Worker(name, [sys.executable, "-c", OURS_WORKER, str(path)]) for name, path in ours.items()]
    workers += [Worker(name, [str(args.llama_env / "bin" / "python"), "-c", LLAMA_WORKER, str(path), str(context)])
                for name, path in llama.items()]
    tasks = [("prefill", args.prefill)] + [("decode", c) for c in args.contexts]
    times = {(w.name, task): [] for w in workers for task in tasks}
    for task in tasks:  # warm-up, and llama.cpp's untimed fill to each context
        for worker in workers:
            worker.time(*task)
    for _ in range(args.repeats):
        for task in tasks:
            for worker in workers:
                times[(worker.name, task)].append(worker.time(*task))
    for worker in workers:
        worker.close()
    rows = []
    for worker in workers:
        row = {"backend": worker.name, "prefill_tokens_per_s": args.prefill / statistics.median(times[(worker.name, tasks[0])])}
        for task in tasks[1:]:
            row[f"decode_ms_at_{task[1]}"] = 1000 * statistics.median(times[(worker.name, task)])
        rows.append(row)
    (args.out / "cpu.json").write_text(json.dumps({"layers": args.layers, "repeats": args.repeats, "rows": rows}, indent=2) + "\n")
    header = " | ".join(f"decode ms at {c}" for c in args.contexts)
    print(f"| backend | prefill {args.prefill} tok/s | {header} |\n|---|---|" + "---|" * len(args.contexts))
    for row in rows:
        decode = " | ".join(f"{row[f'decode_ms_at_{c}']:.1f}" for c in args.contexts)
        print(f"| {row['backend']} | {row['prefill_tokens_per_s']:.1f} | {decode} |")


if __name__ == "__main__":
    main()
