"""Parity tolerances, per precision: the one place they are defined (docs/parity-report.md).

A backend passes a scenario when every check below holds for every step:

- logits: max |error| relative to the reference's max |logit| (`logits_rel`),
  cosine similarity per position (`cosine`), mean KL divergence of the
  next-token distributions (`kl`) per step; top-1 agreement (`top1`) over all
  positions of the scenario;
- KV cache: max |error| of each layer's present keys/values relative to that
  tensor's max |value| (`kv_rel`), over unpadded positions;
- hidden states (first-divergence search): per layer, max |error| relative to
  the reference's max |value| (`hidden_rel`).

fp32 bounds sit two orders of magnitude above the error measured between our
exports and the reference (about 1e-6 relative), and far below what one wrong
weight or a wrong mask produces. fp16 and fp8 bounds follow from the formats'
precision (11 and 4 mantissa bits) over a few layers; the fp8 row leaves 2-3x
margin over what the bundled model measures with per-channel weight scales
(logits max rel 0.049, KV 0.082, min cosine 0.9946, KL 0.009, top-1 0.92 over
a scenario; docs/tensorrt.md), except top-1, which is also what a deployment
would accept.

int8 and int4 (weight-only MatMulNBits, `quantize --weights`, lm_head at int8) are set
1.5-2x above the worst of RTN and calibrated measured on the two models CI verifies
(docs/benchmarks.md). The bundled model is the gentle one (int4: logits max rel 0.09,
cosine 0.983, KL 0.049, top-1 0.76); the random all-global 1.2B-layout model (tests/lg_layout.py:
std-0.5 random matrices, hidden 64, so two blocks per column) amplifies weight error through
its layers and sets the bounds: int8 max rel 0.054, cosine 0.9967, KL 0.0013, top-1 0.89,
KV 0.052, hidden 0.065; int4 max rel 0.57, cosine 0.79, KL 0.17, top-1 0.46, KV 0.60,
hidden 0.45. The int4 row therefore catches packing and layout faults (which leave cosine
near 0 and top-1 near chance), not accuracy drift: accuracy is measured on real text
(docs/benchmarks.md), and the one-node tests check the packed weights exactly.

The perplexity scenario (real text, every position) has its own row per class,
`PERPLEXITY_TOLERANCES`, keyed by the same class names; its bounds are argued
beside the table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Tolerance:
    logits_rel: float
    cosine: float
    kl: float
    top1: float
    kv_rel: float
    hidden_rel: float

    def to_dict(self) -> dict:
        return asdict(self)


TOLERANCES = {
    "fp32": Tolerance(logits_rel=1e-4, cosine=0.999999, kl=1e-6, top1=1.0, kv_rel=1e-4, hidden_rel=1e-4),
    "fp16": Tolerance(logits_rel=2e-2, cosine=0.999, kl=2e-3, top1=0.97, kv_rel=2e-2, hidden_rel=3e-2),
    "fp8": Tolerance(logits_rel=0.15, cosine=0.98, kl=0.03, top1=0.9, kv_rel=0.2, hidden_rel=0.25),
    "int8": Tolerance(logits_rel=0.1, cosine=0.99, kl=0.005, top1=0.8, kv_rel=0.1, hidden_rel=0.15),
    "int4": Tolerance(logits_rel=0.85, cosine=0.6, kl=0.3, top1=0.3, kv_rel=0.9, hidden_rel=0.7),
}


@dataclass(frozen=True)
class PerplexityTolerance:
    """Bounds of the perplexity scenario (real text, every position scored); None: reported, not judged.

    ppl_rel: |export perplexity / reference perplexity - 1|; top1: argmax agreement over all
    positions; kl_mean: mean KL(reference || export) per position.
    """

    ppl_rel: float
    top1: float | None
    kl_mean: float | None

    def to_dict(self) -> dict:
        return asdict(self)


# Measured on the bundled model's held-out text (2209 positions; docs/parity-report.md#perplexity-on-real-text):
#   fp32 ort  rel diff 4.9e-8, top-1 1.0,    mean KL 7.4e-13
#   fp16 ort  rel diff 1.3e-5, top-1 0.9986, mean KL 4.9e-7
#   fp8       rel diff 2.6e-3, top-1 0.962,  mean KL 2.4e-3
# fp32 and fp16 bounds sit two orders of magnitude above that (fp32 KL at the per-step bound above; top-1
# allows the odd near-tie flipping), fp8 at 4-8x, with top-1 at the per-step fp8 bound. The relative
# perplexity difference is the weakest check: errors of either sign cancel in the mean NLL (a 1.5x gate_proj
# on layer 0 moves it by -1.5e-4 while the mean KL rises to 2e-3), so KL and top-1 carry the parity.
# Weight-only int8 / int4 (block 32, lm_head int8), RTN and GPTQ-calibrated, same text:
#   int8 RTN  rel diff 6.9e-4, top-1 0.9855, mean KL 1.9e-4    int8 GPTQ  6.7e-4, 0.9887, 1.8e-4
#   int4 RTN  rel diff 2.7e-3, top-1 0.9357, mean KL 9.5e-3    int4 GPTQ  1.5e-3, 0.9547, 5.2e-3
# The perplexity bounds are issue 14's goals (int8 within 0.5%, int4 within 3%); top-1 and KL sit below
# the worst measured with a margin. Issue 14 also asks int8 top-1 >= 0.99 on this text: measured 0.986-0.989,
# a miss reported in docs/benchmarks.md, not hidden by this table.
PERPLEXITY_TOLERANCES = {
    "fp32": PerplexityTolerance(ppl_rel=1e-5, top1=0.999, kl_mean=1e-6),
    "fp16": PerplexityTolerance(ppl_rel=1e-3, top1=0.99, kl_mean=1e-4),
    "fp8": PerplexityTolerance(ppl_rel=0.02, top1=0.9, kl_mean=0.01),
    "int8": PerplexityTolerance(ppl_rel=5e-3, top1=0.98, kl_mean=1e-3),
    "int4": PerplexityTolerance(ppl_rel=0.03, top1=0.9, kl_mean=0.03),
}


def precision_of(dtype: str, quantization: str | None = None) -> str:
    """The tolerance class of an export: fp8 when quantized, else by activation dtype."""
    if quantization in ("fp8", "int8", "int4"):
        return quantization
    return {"float32": "fp32", "float16": "fp16"}.get(dtype, "fp32")
