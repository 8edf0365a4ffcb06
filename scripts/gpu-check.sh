#!/usr/bin/env bash
# GPU checks, in one prepared run of a few minutes, for a host with an NVIDIA GPU and the
# TensorRT runtime (full `tensorrt`, or `tensorrt-rtx` on an RTX-class GPU):
#   1. export the bundled model (fp16), lower for TensorRT, quantize to fp8
#   2. build fp16 and fp8 engines for this GPU (and an fp16 one with the attention plugin)
#   3. parity scenarios through the engines (the trt backend) against the reference
#   4. prefill / decode timing of the engines
#   5. the ort export on onnxruntime-gpu's CUDA execution provider, at parity (needs the [gpu] extra)
#   6. the resident engine's scheduler (exaone4.exporter.serving) over a --kv-cache static export on the CUDA
#      provider, and over the fp16 TensorRT engine (growing-cache slot pool): greedy tokens alone == batched
#      (scripts/serving_check.py; 4 slots: the engine's profiles are built for batch 1..4)
# Results land in ${1:-gpu-check}/ (reports, build records, timings.json).
set -euo pipefail
out=${1:-gpu-check}
cli=${CLI:-exaone4-export}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name())"
$cli export bundled:tiny -o "$out/canonical-fp16" --dtype float16 --force --quiet
$cli lower "$out/canonical-fp16" -o "$out/trt-fp16" --target trt --force --quiet
$cli quantize "$out/trt-fp16" --checkpoint bundled:tiny -o "$out/trt-fp8" --force --quiet
cc=$(python -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'SM{m}{n}')")
for precision in fp16 fp8; do
  $cli build "$out/trt-$precision" --precision "$precision" -o "$out/engine-$precision" --compute-capability "$cc" --force --quiet
  $cli verify "$out/trt-$precision" --checkpoint bundled:tiny --backend trt --backend ort --engine "$out/engine-$precision" \
    --report "$out/report-$precision" --force --quiet || echo "parity failed for $precision (see $out/report-$precision)"
done
# the attention plugin (exporter/trt/plugin.py): same parity scenarios through its engine
$cli build "$out/canonical-fp16" --precision fp16 --attention plugin -o "$out/engine-plugin" --compute-capability "$cc" --force --quiet
$cli verify "$out/canonical-fp16" --checkpoint bundled:tiny --backend trt --engine "$out/engine-plugin" \
  --report "$out/report-plugin" --force --quiet || echo "parity failed for the plugin engine (see $out/report-plugin)"
# onnxruntime-gpu (the [gpu] extra): the ort export through the CUDA execution provider
$cli export bundled:tiny -o "$out/ort" --target ort --force --quiet
$cli verify "$out/ort" --checkpoint bundled:tiny --backend ort --ort-device cuda --report "$out/report-ort-cuda" --force --quiet \
  || echo "ort on CUDA: parity failed or no CUDA execution provider (see $out/report-ort-cuda, README's [gpu] extra)"
# the resident engine's scheduler over onnxruntime-gpu (in-place buffers bound through I/O binding)
$cli export bundled:tiny -o "$out/ort-static" --target ort --kv-cache static --max-context 256 --force --quiet
python scripts/serving_check.py "$out/ort-static" --providers CUDAExecutionProvider CPUExecutionProvider \
  || echo "serving on CUDA: batched tokens differ or no CUDA execution provider (see above)"
python scripts/serving_check.py "$out/engine-fp16" --trt --context 256 --slots 4 \
  || echo "serving over TensorRT: batched tokens differ from alone (fp16 near-ties are reported above)"
python - "$out" <<'PY'
import json, sys, time
from pathlib import Path
import numpy as np
from exaone4.exporter.config import load_config
from exaone4.exporter.session import CacheLayout, KVCacheSession
from exaone4.exporter.trt.runner import TrtRunner
out = Path(sys.argv[1]); results = {}
config = load_config(out / "trt-fp16" / "config.json")
for precision in ("fp16", "fp8"):
    with TrtRunner(out / f"engine-{precision}") as runner:
        ids = np.random.default_rng(0).integers(16, config.vocab_size, (1, 256))
        times = {"prefill": [], "decode": []}
        for _ in range(5):
            session = KVCacheSession(runner, CacheLayout.of(config, np.float16))
            start = time.perf_counter(); logits = session.prefill(ids); times["prefill"].append(time.perf_counter() - start)
            for _ in range(32):
                start = time.perf_counter(); logits = session.decode(logits[:, -1].argmax(-1)); times["decode"].append(time.perf_counter() - start)
        results[precision] = {"prefill_tokens_per_s": 256 / float(np.median(times["prefill"])),
                              "decode_ms_per_token": 1000 * float(np.median(times["decode"]))}
(out / "timings.json").write_text(json.dumps(results, indent=2)); print(json.dumps(results, indent=2))
PY
