"""The resident engine's scheduler over a runner, outside Triton: greedy alone == batched, and tokens/s.

    python scripts/serving_check.py STATIC_EXPORT [--providers CUDAExecutionProvider CPUExecutionProvider]
    python scripts/serving_check.py ENGINE_DIR --trt            # a TensorRT engine (GrowingSlotPool)
                                    [--slots 8] [--max-tokens 32] [--prompt TEXT ...]

Runs the bundled model's prompts (or any text prompts given with --prompt) through
`exaone4.exporter.serving`: over an OrtRunner on the given execution providers and
the in-place slot pool, or over the TensorRT runner and the growing-cache pool;
each alone in a one-slot engine, then all at once, and reports the first diverging
token of any request whose batched tokens differ from its lone ones. Exit 1 when
one differs. scripts/gpu-check.sh runs both on a GPU host.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from exaone4.exporter.artifacts import ExportDir
from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.ort_runner import OrtRunner
from exaone4.exporter.serving import Client, EngineConfig, Finish, GenerationRequest, GrowingSlotPool, Scheduler, SlotPool

PROMPTS = ["Show me def dumps", "Show me def quote", "Write a class for a queue", "import os", "def main():",
           "Explain the json module in one line", "class Stack:", "Sort a list"]


class Collect(Client):
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.finish: Finish | None = None

    def on_token(self, token: int) -> None:
        self.tokens.append(token)

    def on_finish(self, finish: Finish, error: str | None) -> None:
        self.finish = finish
        if error:
            print(f"request failed: {error}", file=sys.stderr)


def run(runner, layout, pool_type, context: int, requests: list[GenerationRequest], slots: int) -> tuple[list[list[int]], float]:
    pool = pool_type(runner, layout, slots, context)
    # whole prompts (a TensorRT engine's profiles take a prompt only on an empty past), as long as a wrapping ring allows
    config = EngineConfig(max_batch=slots, max_context=context, max_queue=len(requests), prefill_chunk=pool.max_chunk, prefill_stall=0)
    scheduler = Scheduler(pool, config)
    clients = [Collect() for _ in requests]
    for request, client in zip(requests, clients):
        scheduler.submit(request, client)
    start = time.perf_counter()
    while scheduler.step():
        pass
    return [c.tokens for c in clients], time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--providers", nargs="+", default=["CPUExecutionProvider"])
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--prompt", action="append", default=None)
    parser.add_argument("--trt", action="store_true", help="EXPORT is a TensorRT engine directory")
    parser.add_argument("--context", type=int, default=256, help="positions per slot for --trt")
    args = parser.parse_args()
    chat = ChatTokenizer.open(args.export)
    requests = [GenerationRequest(tuple(chat.prompt_ids([{"role": "user", "content": p}])), args.max_tokens, stop_ids=chat.stop_ids)
                for p in args.prompt or PROMPTS]
    if args.trt:
        from exaone4.exporter.trt.runner import TrtRunner

        runner = TrtRunner(args.export)
        layout, pool_type, context, where = runner.artifact.cache_layout(), GrowingSlotPool, args.context, "TensorRT"
    else:
        export = ExportDir.open(args.export)
        runner = OrtRunner(export.model_path, providers=tuple(args.providers))
        layout, pool_type, context, where = export.cache_layout(), SlotPool, export.static_context, ", ".join(args.providers)
    with runner:
        alone = [run(runner, layout, pool_type, context, [request], 1)[0][0] for request in requests]
        batched, seconds = run(runner, layout, pool_type, context, requests, args.slots)
    differ = 0
    for i, (one, many) in enumerate(zip(alone, batched)):
        where = next((k for k, (a, b) in enumerate(zip(one, many)) if a != b), None)
        if where is not None or len(one) != len(many):
            differ += 1
            print(f"request {i}: batched tokens differ from alone at token {where if where is not None else min(len(one), len(many))}")
    tokens = sum(map(len, batched))
    print(f"{len(requests)} requests on {where}: {tokens} tokens in {seconds:.2f} s batched "
          f"({tokens / seconds:.1f} tok/s); {len(requests) - differ} of {len(requests)} identical alone and batched")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
