"""One backend of scripts/bench_cpu.py, loaded once in its own process and timed on request.

    python scripts/bench_cpu_worker.py ours|llama|transformers MODEL CONTEXT

Runs under the project's Python (ours, transformers) or the llama.cpp benchmark
environment's (llama), so it imports only what its backend needs. It prints
{"ready": ...} once loaded, then answers each stdin line, a JSON [task, n], with one
JSON line:

- ["prefill", n]: n random tokens from an empty cache -> {"seconds": ...}
- ["decode", c]:  one token at context c (c - 1 positions cached), repeated until
  MIN_SECONDS have passed -> {"seconds": mean per token, "steps": k}. The cache is
  brought to c - 1 positions once per c, untimed: ours writes its in-place buffers
  directly (the cost does not depend on the values), llama.cpp and transformers
  prefill or fill theirs; each step then re-decodes position c - 1.
- ["memory", 0]:  {"rss_mib": ..., "peak_rss_mib": ...} from /proc/self/status.
"""

from __future__ import annotations

import json
import sys
import time

MIN_SECONDS = 0.3  # a decode repetition lasts at least this long: jiffy-resolution contention checks stay meaningful
VOCAB_LOW = 16  # random prompt ids start above the special tokens


def memory() -> dict:
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return {"rss_mib": int(status["VmRSS"].split()[0]) / 1024, "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024}


def repeat_for(step) -> dict:
    """Run step() until MIN_SECONDS have passed; the mean seconds per call."""
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        took = time.perf_counter() - start
        if took >= MIN_SECONDS:
            return {"seconds": took / steps, "steps": steps}


class Ours:
    """Our ort export with the in-place cache, driven through StaticKVCacheSession."""

    def __init__(self, path: str, context: int) -> None:
        import numpy as np

        from exaone4.exporter.artifacts import ExportDir
        from exaone4.exporter.runners import OrtRunner

        self.np = np
        export = ExportDir.open(path, check_files=False)
        self.runner = OrtRunner(export.model_path, static_context=export.static_context)
        self.runner.open()
        self.layout, self.vocab = export.cache_layout(), export.config.vocab_size
        self.rng = np.random.default_rng(0)
        self.session, self.context = None, 0

    def prefill(self, n: int) -> dict:
        session = self.runner.new_session(self.layout)
        ids = self.rng.integers(VOCAB_LOW, self.vocab, (1, n))
        start = time.perf_counter()
        session.prefill(ids)
        return {"seconds": time.perf_counter() - start}

    def decode(self, context: int) -> dict:
        np = self.np
        if self.context != context:
            self.session = self.runner.new_session(self.layout)
            self.session.prefill(np.array([[7]]))
            for buffer in self.session.caches.values():  # [B, KV, max_context, D]
                buffer[:, :, : context - 1] = 0.01
            self.context = context
        session, token = self.session, np.array([7])

        def step() -> None:
            session.filled[:] = context - 1
            session.width = context - 1
            session.decode(token)

        return repeat_for(step)


class Llama:
    """llama.cpp through llama-cpp-python, 2 threads, its default KV cache (f16)."""

    def __init__(self, path: str, context: int) -> None:
        import numpy as np
        from llama_cpp import Llama as Model

        self.model = Model(path, n_ctx=context, n_threads=2, n_threads_batch=2, n_batch=512, verbose=False)
        self.rng, self.context = np.random.default_rng(0), 0
        self.vocab = self.model.n_vocab()

    def prefill(self, n: int) -> dict:
        self.model.reset()
        ids = self.rng.integers(VOCAB_LOW, self.vocab, n).tolist()
        start = time.perf_counter()
        self.model.eval(ids)
        self.context = 0
        return {"seconds": time.perf_counter() - start}

    def decode(self, context: int) -> dict:
        model = self.model
        if self.context != context:
            model.reset()
            model.eval(self.rng.integers(VOCAB_LOW, self.vocab, context - 1).tolist())
            self.context = context

        def step() -> None:
            model.n_tokens = context - 1  # eval() drops cached positions from n_tokens on: position c - 1 again
            model.eval([7])

        return repeat_for(step)


class Transformers:
    """transformers' Exaone4ForCausalLM in fp32 (sdpa), its DynamicCache filled with random keys/values."""

    def __init__(self, path: str, context: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, DynamicCache

        torch.set_num_threads(2)
        self.torch, self.cache_class = torch, DynamicCache
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.config = self.model.config
        self.generator = torch.Generator().manual_seed(0)
        self.cache, self.context = None, 0

    def prefill(self, n: int) -> dict:
        torch = self.torch
        ids = torch.randint(VOCAB_LOW, self.config.vocab_size, (1, n), generator=self.generator)
        with torch.inference_mode():
            start = time.perf_counter()
            self.model(input_ids=ids, logits_to_keep=1)
            return {"seconds": time.perf_counter() - start}

    def decode(self, context: int) -> dict:
        torch, config = self.torch, self.config
        if self.context != context:
            self.cache = self.cache_class(config=config)
            head_dim = config.hidden_size // config.num_attention_heads
            shape = (1, config.num_key_value_heads, context - 1, head_dim)  # [B, KV, T, D]
            for layer in range(config.num_hidden_layers):
                self.cache.update(torch.randn(shape), torch.randn(shape), layer)
            self.context = context
        ids, positions = torch.tensor([[7]]), torch.tensor([[context - 1]])

        def step() -> None:
            with torch.inference_mode():
                self.model(input_ids=ids, position_ids=positions, cache_position=positions[0], past_key_values=self.cache, use_cache=True)
            self.cache.crop(-1)  # drop the position just decoded

        return repeat_for(step)


BACKENDS = {"ours": Ours, "llama": Llama, "transformers": Transformers}


def main() -> None:
    kind, path, context = sys.argv[1], sys.argv[2], int(sys.argv[3])
    backend = BACKENDS[kind](path, context)
    print(json.dumps({"ready": True, **memory()}), flush=True)
    for line in sys.stdin:
        task, n = json.loads(line)
        answer = memory() if task == "memory" else getattr(backend, task)(n)
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
