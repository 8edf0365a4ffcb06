"""Serving throughput and latency: the resident engine against today's BLS repository, same run, real tritonserver.

    python scripts/bench_serving.py OUT [--shape 1.2b --layers 4 | --checkpoint DIR] [--clients 1 4 8 16]
                                        [--prompt-tokens 64] [--max-tokens 48] [--long-prompt 2048] [--repeats 3] [--smoke]

Prepares once (under OUT/work): a random checkpoint of the real shape cut to
`--layers` (its tokenizer widened so every id decodes to visible text), a growing-
cache ort export for the BLS repository (`triton` defaults: 2 generation instances)
and a `--kv-cache static` export for the resident engine (`--max-batch` the most
clients, `--prefill-chunk`, `--prefill-stall`), both `--logits last`. Then `--repeats` passes; each
starts a real tritonserver on loopback for one repository at a time (alternating
which goes first) and runs, for each client count, that many streaming gRPC
clients each sending `--requests` requests in turn to `exaone4_stream`:
aggregate generated tokens/s (a response per piece of text; with the widened
tokenizer a token is a piece), time to first token and inter-token latency p50/p99.
Then `--long-prompt`: one prompt of that many tokens admitted while 8 streams run,
and those streams' inter-token latency p99 against their median (chunked prefill).
Throughput is the median over passes with its min-max; latency percentiles pool
every pass's requests. Results: OUT/serving.json, OUT/serving.md, OUT/serving.png.
Measure on a quiet machine; `--smoke` runs the bundled tiny model at toy sizes to
check the script.
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from exaone4.exporter.contract import CONFIG_FILE, TOKENIZER_FILE
from exaone4.exporter.serving.inputs import MAX_TOKENS, TEXT_INPUT, TEXT_OUTPUT
from exaone4.exporter.triton_parts import STREAM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from triton_server import ensure_triton, triton_server  # noqa: E402

CLI = [sys.executable, "-m", "exaone4.exporter.cli"]
LONG_STREAMS = 8  # streams running when the long prompt arrives


@dataclass
class Timeline:
    """One request as a client saw it: when it was sent and when each piece arrived."""

    sent: float
    arrivals: list[float]

    @property
    def ttft(self) -> float:
        return self.arrivals[0] - self.sent

    @property
    def gaps(self) -> list[float]:
        return list(np.diff(self.arrivals))


@dataclass
class Round:
    """One client count on one repository, over every pass: throughput per pass, latencies pooled."""

    repository: str
    clients: int
    tokens_per_s: list[float]
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float

    @property
    def median(self) -> float:
        return float(np.median(self.tokens_per_s))

    def row(self) -> dict:
        return {**asdict(self), "tokens_per_s_median": self.median}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


# ----------------------------------------------------------------------------- preparing


def prepare(work: Path, args) -> dict[str, Path]:
    """{"bls": repo, "engine": repo} under `work`, made once."""
    checkpoint = work / "checkpoint"
    if args.checkpoint:
        checkpoint = args.checkpoint
    elif not (checkpoint / CONFIG_FILE).is_file():
        shape = ["1.2b", "--layers", str(args.layers)]
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_checkpoint.py"), shape[0], str(checkpoint), *shape[1:]],
                       check=True)
        widen_tokenizer(checkpoint)
    context = max(512, -(-(args.long_prompt + args.prompt_tokens + args.max_tokens + 64) // 256) * 256)
    exports = {"bls": (work / "full", ["--logits", "last"]),
               "engine": (work / "static", ["--logits", "last", "--kv-cache", "static", "--max-context", str(context),
                                            "--kv-budget", "64"])}
    triton = ensure_triton()
    if triton is None:
        raise SystemExit("no tritonserver: scripts/setup_triton.sh could not unpack it")
    repos = {}
    for kind, (export, options) in exports.items():
        if kind not in args.repositories:
            continue
        if not export.is_dir():
            subprocess.run([*CLI, "export", str(checkpoint), "-o", str(export), "--target", "ort", "--quiet", *options], check=True)
        repos[kind] = work / f"repo-{kind}"
        slots = max(*args.clients, LONG_STREAMS + 1 if args.long_prompt else 0)  # the long prompt needs a slot of its own
        knobs = (["--max-batch", str(slots), "--max-queue", "64", "--prefill-chunk", str(args.prefill_chunk),
                  "--prefill-stall", str(args.prefill_stall)]
                 if kind == "engine" else ["--instances", str(args.bls_instances)])
        subprocess.run([*CLI, "triton", str(export), "--repo", str(repos[kind]), "--python-env", str(triton / "env"), "--force",
                        *knobs], check=True)
    return repos


def widen_tokenizer(checkpoint: Path) -> None:
    """Give every id of the config's vocabulary a visible piece ("w<id>"), so random weights stream text.

    The bundled tokenizer covers 2048 of the real 102400 ids; the rest would decode
    to nothing and send no response. Extra vocabulary entries without merges are
    never produced by encoding, so prompts tokenize as before.
    """
    vocab_size = json.loads((checkpoint / CONFIG_FILE).read_text())["vocab_size"]
    data = json.loads((checkpoint / TOKENIZER_FILE).read_text())
    vocab = data["model"]["vocab"]
    taken = set(vocab.values()) | {token["id"] for token in data.get("added_tokens", [])}
    for i in range(vocab_size):
        if i not in taken:
            vocab[f"w{i}"] = i
    (checkpoint / TOKENIZER_FILE).write_text(json.dumps(data))


# ----------------------------------------------------------------------------- measuring


def prompt_text(words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    vocabulary = ["def", "return", "import", "class", "self", "value", "list", "print", "data", "for", "while", "with"]
    return " ".join(vocabulary[i] for i in rng.integers(0, len(vocabulary), words))


def stream_request(grpc, url: str, prompt: str, max_tokens: int, timeline_out: list, started: threading.Event | None = None):
    """Send one request on its own stream; append its Timeline."""
    events: queue.Queue = queue.Queue()
    client = grpc.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((time.perf_counter(), result, error)))
    inputs = []
    for name, value, kind, dtype in ((TEXT_INPUT, prompt.encode(), "BYTES", np.object_), (MAX_TOKENS, max_tokens, "INT32", np.int32)):
        tensor = grpc.InferInput(name, [1], kind)
        tensor.set_data_from_numpy(np.array([value], dtype=dtype))
        inputs.append(tensor)
    timeline = Timeline(time.perf_counter(), [])
    client.async_stream_infer(STREAM, inputs, enable_empty_final_response=True)
    try:
        while True:
            at, result, error = events.get(timeout=600)
            if error is not None:
                raise RuntimeError(str(error))
            if result.as_numpy(TEXT_OUTPUT) is not None:
                timeline.arrivals.append(at)
                if started is not None and len(timeline.arrivals) == 4:
                    started.set()
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
    if timeline.arrivals:
        timeline_out.append(timeline)


def run_clients(grpc, url: str, clients: int, args, timelines: list[Timeline]) -> float:
    """`clients` streaming clients, each sending `--requests` requests in turn; aggregate tokens/s."""
    before = len(timelines)

    def client(index: int) -> None:
        for r in range(args.requests):
            stream_request(grpc, url, prompt_text(args.prompt_words, index * 100 + r), args.max_tokens, timelines)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return sum(len(t.arrivals) for t in timelines[before:]) / seconds


def summarize(repository: str, clients: int, rates: list[float], timelines: list[Timeline]) -> Round:
    gaps = [g for t in timelines for g in t.gaps]
    ttfts = [t.ttft for t in timelines]
    return Round(repository, clients, rates, percentile(ttfts, 50), percentile(ttfts, 99), percentile(gaps, 50), percentile(gaps, 99))


def measure_long_prompt(grpc, url: str, args) -> dict:
    """8 streams running; one `--long-prompt` prompt arrives; the streams' inter-token latency p50/p99."""
    timelines: list[Timeline] = []
    started = threading.Event()
    streams = [threading.Thread(target=stream_request, args=(grpc, url, prompt_text(args.prompt_words, 7000 + i),
                                                             args.long_max_tokens, timelines, started if i == 0 else None))
               for i in range(LONG_STREAMS)]
    for thread in streams:
        thread.start()
    started.wait(600)
    injected: list[Timeline] = []
    stream_request(grpc, url, prompt_text(int(args.long_prompt * args.prompt_words / args.prompt_tokens), 9), 4, injected)
    for thread in streams:
        thread.join()
    gaps = [g for t in timelines for g in t.gaps]
    p50, p99 = percentile(gaps, 50), percentile(gaps, 99)
    return {"itl_p50_ms": p50, "itl_p99_ms": p99, "p99_over_p50": p99 / p50, "long_prompt_ttft_ms": injected[0].ttft * 1000,
            "max_gap_ms": float(max(gaps)) * 1000}


def measure(repos: dict[str, Path], args, log_dir: Path) -> dict:
    """`--repeats` passes; each starts one repository's server at a time (order alternating between passes:
    in one probe each, the engine made 7.6 tok/s on one stream with both up against 11.6 alone) and runs every client count on it."""
    import tritonclient.grpc as grpc

    rates: dict[tuple[str, int], list[float]] = {(kind, c): [] for kind in repos for c in args.clients}
    timelines: dict[tuple[str, int], list[Timeline]] = {key: [] for key in rates}
    long_prompt: dict[str, list[dict]] = {kind: [] for kind in repos}
    for repeat in range(args.repeats):
        for kind in (list(repos) if repeat % 2 == 0 else list(reversed(repos))):
            with triton_server(repos[kind], log_dir / f"tritonserver-{kind}-{repeat + 1}.log", timeout=600) as urls:
                run_clients(grpc, urls.grpc, 2, args, [])  # warm-up: the first batches of a fresh server
                for clients in args.clients:
                    rate = run_clients(grpc, urls.grpc, clients, args, timelines[kind, clients])
                    rates[kind, clients].append(rate)
                    print(f"pass {repeat + 1} {kind:6} {clients:2} clients: {rate:8.1f} tok/s", flush=True)
                if args.long_prompt:
                    long_prompt[kind].append(measure_long_prompt(grpc, urls.grpc, args))
                    print(f"pass {repeat + 1} {kind:6} long prompt among {LONG_STREAMS} streams: {long_prompt[kind][-1]}", flush=True)
    rounds = [summarize(kind, clients, rates[kind, clients], timelines[kind, clients]) for kind, clients in rates]
    return {"rounds": [r.row() for r in rounds], "long_prompt": {k: v for k, v in long_prompt.items() if v}}


# ----------------------------------------------------------------------------- reporting


def report(results: dict, args, out: Path) -> None:
    rounds = results["rounds"]
    single = {r["repository"]: r["tokens_per_s_median"] for r in rounds if r["clients"] == 1}
    lines = ["| repository | clients | tokens/s, median (min-max) | x one stream | TTFT p50 / p99 ms | ITL p50 / p99 ms |",
             "|---|---|---|---|---|---|"]
    for r in rounds:
        rates = r["tokens_per_s"]
        lines.append(f"| {r['repository']} | {r['clients']} | {r['tokens_per_s_median']:.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
                     f"{r['tokens_per_s_median'] / single.get(r['repository'], float('nan')):.2f} | "
                     f"{r['ttft_p50_ms']:.0f} / {r['ttft_p99_ms']:.0f} | {r['itl_p50_ms']:.1f} / {r['itl_p99_ms']:.1f} |")
    by = {(r["repository"], r["clients"]): r["tokens_per_s_median"] for r in rounds}
    for clients in args.clients:
        if ("engine", clients) in by and ("bls", clients) in by:
            lines.append(f"\nengine / BLS at {clients} clients: {by[('engine', clients)] / by[('bls', clients)]:.2f}x")
    for kind, passes in results["long_prompt"].items():
        ratios = [p["p99_over_p50"] for p in passes]
        lines.append(f"\n{kind}: a {args.long_prompt}-token prompt among 8 streams, per pass: ITL p50 / p99 ms "
                     + ", ".join(f"{p['itl_p50_ms']:.1f} / {p['itl_p99_ms']:.1f} ({p['p99_over_p50']:.2f}x)" for p in passes)
                     + f"; median p99/p50 {float(np.median(ratios)):.2f}x; the long prompt's TTFT median "
                     f"{float(np.median([p['long_prompt_ttft_ms'] for p in passes])):.0f} ms")
    (out / "serving.md").write_text("\n".join(lines) + "\n")
    (out / "serving.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=2) + "\n")
    print("\n".join(lines))
    chart(rounds, out / "serving.png")


def chart(rounds: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for repository in sorted({r["repository"] for r in rounds}):
        own = [r for r in rounds if r["repository"] == repository]
        medians = [r["tokens_per_s_median"] for r in own]
        spread = [[m - min(r["tokens_per_s"]) for r, m in zip(own, medians)], [max(r["tokens_per_s"]) - m for r, m in zip(own, medians)]]
        axis.errorbar([r["clients"] for r in own], medians, yerr=spread, marker="o", capsize=3, label=repository)
    axis.set_xlabel("concurrent streaming clients")
    axis.set_ylabel("generated tokens/s (aggregate)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint instead of the random 1.2B-shape cut")
    parser.add_argument("--layers", type=int, default=4, help="layers of the random 1.2B-shape checkpoint")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client, one after another")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--long-prompt", type=int, default=2048, help="0 skips the long-prompt measurement")
    parser.add_argument("--long-max-tokens", type=int, default=96, help="tokens each of the 8 streams makes around it")
    parser.add_argument("--prefill-chunk", type=int, default=256)
    parser.add_argument("--prefill-stall", type=int, default=1, help="the engine's prefill_stall (0: whole chunks a step)")
    parser.add_argument("--bls-instances", type=int, default=2, help="generation model instances of the BLS repository")
    parser.add_argument("--repositories", nargs="+", choices=["bls", "engine"], default=["bls", "engine"],
                        help="which repositories to measure (both: the comparison)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over every client count, repositories alternating")
    parser.add_argument("--smoke", action="store_true", help="the bundled tiny model at toy sizes: checks the script only")
    args = parser.parse_args()
    if args.smoke:
        args.checkpoint = args.checkpoint or Path(__file__).resolve().parents[1] / "exporter" / "tiny"
        args.clients, args.requests, args.max_tokens, args.long_prompt, args.long_max_tokens = [1, 4], 1, 16, 200, 24
        args.repeats = 2
        args.prompt_tokens = 32
    args.prompt_words = max(1, args.prompt_tokens // 2)  # about two tokens a word in the bundled tokenizer
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    repos = prepare(work, args)
    logs = args.out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    report(measure(repos, args, logs), args, args.out)


if __name__ == "__main__":
    main()
