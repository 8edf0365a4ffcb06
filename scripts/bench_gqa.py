"""One onnxruntime GroupQueryAttention node over a shared (in-place) KV buffer: decode time against past length.

    python scripts/bench_gqa.py [--dtype float32|float16] [--repeats 12]

The 1.2B's heads (32 query, 8 KV, head_dim 64), batch 1, one new token, past and present bound
to one buffer (what `--kv-cache static` exports run). Prints median, min and max per past length,
the first two repetitions dropped as warm-up: the attention cost per layer that is left once the
cache is no longer copied (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

HEADS, KV, DIM = 32, 8, 64


def gqa_model(elem: int) -> bytes:
    shapes = [("q", [1, 1, HEADS * DIM]), ("k", [1, 1, KV * DIM]), ("v", [1, 1, KV * DIM]),
              ("pk", [1, KV, "M", DIM]), ("pv", [1, KV, "M", DIM])]
    inputs = [helper.make_tensor_value_info(n, elem, s) for n, s in shapes]
    inputs += [helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
               helper.make_tensor_value_info("total", TensorProto.INT32, [])]
    outputs = [helper.make_tensor_value_info(n, elem, None) for n in ("o", "ko", "vo")]
    node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "seqlens_k", "total"], ["o", "ko", "vo"],
                            domain="com.microsoft", num_heads=HEADS, kv_num_heads=KV, local_window_size=-1, do_rotary=0,
                            scale=DIM**-0.5)
    graph = helper.make_graph([node], "gqa", inputs, outputs)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    session = ort.InferenceSession(gqa_model(TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for slots, past in ((1024, 1023), (16384, 16383), (16384, 1023)):
        buffers = [ort.OrtValue.ortvalue_from_numpy(rng.random((1, KV, slots, DIM)).astype(dtype)) for _ in range(2)]
        times = []
        for _ in range(args.repeats):
            binding = session.io_binding()
            for name, width in (("q", HEADS), ("k", KV), ("v", KV)):
                binding.bind_cpu_input(name, rng.random((1, 1, width * DIM)).astype(dtype))
            binding.bind_ortvalue_input("pk", buffers[0])
            binding.bind_ortvalue_input("pv", buffers[1])
            binding.bind_cpu_input("seqlens_k", np.array([past], np.int32))
            binding.bind_cpu_input("total", np.array(past + 1, np.int32))
            binding.bind_output("o")
            binding.bind_ortvalue_output("ko", buffers[0])
            binding.bind_ortvalue_output("vo", buffers[1])
            start = time.perf_counter()
            session.run_with_iobinding(binding)
            times.append(1000 * (time.perf_counter() - start))
        kept = sorted(times[2:])
        print(f"{args.dtype} buffer {slots} past {past}: median {np.median(kept):.2f} ms (min {kept[0]:.2f}, max {kept[-1]:.2f})")


if __name__ == "__main__":
    main()
