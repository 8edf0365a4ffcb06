"""Accuracy of the weight-only int8 / int4 schemes against the reference (docs/benchmarks.md).

    python scripts/bench_weights_accuracy.py EXPORT CHECKPOINT OUT_DIR [--schemes int8-rtn int4-calibrated ...]

EXPORT is a float `ort` export of CHECKPOINT. Each scheme is quantized (exporter/quantize_weights.py)
into OUT_DIR/<scheme> and measured two ways:

- held-out text: 8 windows of 256 tokens of the CPython standard-library files the bundled model
  was not trained on (scripts/tiny_tokenizer.py `stdlib_corpus`, the held-out 2%), one prefill
  per window; perplexity relative to the reference's, top-1 agreement and mean KL(ref || export)
  over every position;
- `verify` (ort backend): the worst over its four random-token scenarios of logits max rel,
  cosine, KL, top-1 agreement and KV max rel, which the tolerance classes judge.

Writes OUT_DIR/accuracy.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tiny_tokenizer import stdlib_corpus

from exaone4.exporter.chat import ChatTokenizer
from exaone4.exporter.checkpoint import Checkpoint
from exaone4.exporter.contract import CacheLayout
from exaone4.exporter.load import load_reference_model
from exaone4.exporter.parity.harness import scenario_top1
from exaone4.exporter.parity.verify import VerifyOptions, verify_export
from exaone4.exporter.quantize_weights import WeightOptions, quantize_weights_export
from exaone4.exporter.runners import OrtRunner, TorchRunner
from exaone4.exporter.session import KVCacheSession

SCHEMES = {
    "int8-rtn": WeightOptions("int8"),
    "int8-calibrated": WeightOptions("int8", method="calibrated"),
    "int4-rtn": WeightOptions("int4"),
    "int4-calibrated": WeightOptions("int4", method="calibrated"),
    "int4-rtn-lm_head-int4": WeightOptions("int4", lm_head="int4"),
    "int4-calibrated-lm_head-int4": WeightOptions("int4", method="calibrated", lm_head="int4"),
    "int8-rtn-accuracy-level-0": WeightOptions("int8", accuracy_level=0),
    "int4-rtn-symmetric-lm_head-int4": WeightOptions("int4", lm_head="int4", symmetric=True),
    "int4-rtn-block-64": WeightOptions("int4", block_size=64),
}


def heldout_windows(checkpoint: Path, windows: int = 8, length: int = 256) -> list[list[int]]:
    ids = ChatTokenizer.open(checkpoint).encode("\n".join(stdlib_corpus()[1]))
    return [ids[i * length : (i + 1) * length] for i in range(windows)]


def text_metrics(runner, layout, windows: list[list[int]], reference: list[np.ndarray]) -> dict:
    nll = kl = 0.0
    agree = scored = positions = 0
    for window, ref in zip(windows, reference):
        got = KVCacheSession(runner, layout).prefill(np.array([window]))[0]
        log_got = torch.log_softmax(torch.from_numpy(got).double(), -1)
        log_ref = torch.log_softmax(torch.from_numpy(ref).double(), -1)
        nll -= float(log_got[:-1].gather(1, torch.tensor(window[1:])[:, None]).sum())
        scored += len(window) - 1
        agree += int((log_got.argmax(-1) == log_ref.argmax(-1)).sum())
        kl += float((log_ref.exp() * (log_ref - log_got)).sum())
        positions += len(window)
    return {"ppl": float(np.exp(nll / scored)), "top1": agree / positions, "kl": kl / positions}


def worst_of(report: dict) -> dict:
    worst = {"max_rel": 0.0, "cosine": 1.0, "kl": 0.0, "top1": 1.0, "kv_rel": 0.0}
    for scenario in report["scenarios"]:
        result = scenario["results"]["ort"]
        for step in result["steps"]:
            worst["max_rel"] = max(worst["max_rel"], step["max_rel"])
            worst["cosine"] = min(worst["cosine"], step["cosine"])
            worst["kl"] = max(worst["kl"], step["kl"])
        worst["top1"] = min(worst["top1"], scenario_top1(result["steps"]))
        for layer in result["kv"]:
            for kind in ("key", "value"):
                worst["kv_rel"] = max(worst["kv_rel"], layer[kind]["prefill_max_rel"], layer[kind]["final_max_rel"])
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES)[:6], choices=list(SCHEMES))
    args = parser.parse_args()

    checkpoint = Checkpoint.open(args.checkpoint)
    layout = CacheLayout.of(checkpoint.config)
    windows = heldout_windows(args.checkpoint)
    reference_runner = TorchRunner(load_reference_model(checkpoint))
    reference = [KVCacheSession(reference_runner, layout).prefill(np.array([w]))[0] for w in windows]
    rows = {"reference": text_metrics(reference_runner, layout, windows, reference)}
    for name in args.schemes:
        out = args.out / name
        manifest = quantize_weights_export(args.export, args.checkpoint, out, SCHEMES[name], force=True)
        with OrtRunner(out) as runner:
            text = text_metrics(runner, layout, windows, reference)
        verify = worst_of(verify_export(out, args.checkpoint, VerifyOptions(backends=("ort",))))
        rows[name] = {**text, "ppl_rel": text["ppl"] / rows["reference"]["ppl"] - 1, "verify": verify,
                      "file_bytes": manifest.quantization["file_bytes"], "weight_bytes": manifest.quantization["weight_bytes"]}
        print(json.dumps({name: rows[name]}), flush=True)
    (args.out / "accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| scheme | file MiB | ppl vs reference | top-1 | KL | verify: max rel | min cosine | max KL | min top-1 | KV max rel |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        if name == "reference":
            continue
        v = row["verify"]
        print(f"| {name} | {row['file_bytes']['after'] / 2**20:.1f} | {100 * row['ppl_rel']:+.2f}% | {row['top1']:.4f} | {row['kl']:.2g} "
              f"| {v['max_rel']:.3f} | {v['cosine']:.4f} | {v['kl']:.2g} | {v['top1']:.3f} | {v['kv_rel']:.3f} |")


if __name__ == "__main__":
    main()
