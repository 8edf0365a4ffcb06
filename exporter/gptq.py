"""GPTQ rounding of the projection weights, calibrated on the reference model's activations.

    rounded = gptq_weights(checkpoint, ids, bits=4, block_size=32, symmetric=False)

`--method calibrated` of `quantize --weights int8|int4`. Round-to-nearest rounds each weight
alone; GPTQ (Frantar et al., 2022) rounds a matrix's input rows one at a time and moves each
row's rounding error onto the rows not yet rounded, weighted by the inverse Hessian
H = X^T X of the layer's inputs X, which minimises the layer's output error ||XW - XQ||
rather than the weight error. The reference model runs in fp32 over the calibration text
(the same text as fp8: exporter/calibrate.py `calibration_ids`); a forward pre-hook on each
projection accumulates H of its input. q/k/v read one input, as do gate/up, so each such
group accumulates one H.

The result is float weights on the quantization grid, which graphs/matmul_nbits.py packs with
onnxruntime's RTN quantizer (as onnxruntime's own GPTQ path does); the grid of each block is
the one that quantizer computes (asymmetric: [min(w, 0), max(w, 0)] in 2^bits - 1 steps, a
rounded zero point), taken from the block's weights as GPTQ's updates leave them.

onnxruntime 1.32 ships a GPTQ (`gptq` in onnxruntime.quantization.neural_compressor.weight_only,
run by its GPTQWeightOnlyQuantConfig), but it feeds errors forward along a column of the upper
Cholesky factor of H^-1 (`Hinv1[i:, i]`), which is zero below the diagonal: its output is
exactly round-to-nearest (tests/test_quantize_weights.py pins this, so a fixed onnxruntime is
noticed). The update here uses the factor's row, as in the paper's reference implementation.
That config would also calibrate on the ONNX graph rather than the reference, pack 4 bits only,
and need the whole graph as one protobuf.

Why GPTQ rather than AWQ or HQQ (docs/benchmarks.md has the measured comparison with RTN):
AWQ scales input channels and folds the inverse scales into the preceding norm, but EXAONE 4
has post-norms, so q/k/v and gate/up read the raw residual stream and have no norm to fold
into; HQQ needs no data at all and stores float zero points, which GatherBlockQuantized cannot
take, so the shared tied tensor could not use it.

Memory: the reference model plus one float32 H per distinct input ([in, in]; for the
EXAONE-4.0-1.2B shape 112 MiB a layer, 3.3 GiB in all).
"""

from __future__ import annotations

import numpy as np
import torch

from .calibrate import WEIGHT_SUFFIX, forward_over
from .checkpoint import Checkpoint
from .load import load_reference_model
from .model import Exaone4ForCausalLM

SHARED_INPUTS = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
PERCDAMP = 0.01  # onnxruntime's default dampening, 1% of the mean Hessian diagonal
GPTQ_BLOCK = 128  # rows rounded between two lazy updates of the remaining rows (speed only; a multiple of every block size)


@torch.no_grad()
def gptq_weights(checkpoint: Checkpoint, ids: list[int], bits: int, block_size: int, symmetric: bool,
                 lm_head_bits: int, sequence: int = 512) -> dict[str, np.ndarray]:
    """{export weight name: GPTQ-rounded [in, out] float32 weight} for every projection and an untied lm_head.

    An untied lm_head is rounded to `lm_head_bits`. A tied one is left to round-to-nearest: its
    tensor is also the embedding table, which GPTQ's error feedback would tune for the lm_head's
    outputs alone (measured: worse perplexity than RTN there, docs/benchmarks.md).
    """
    model = load_reference_model(checkpoint)
    linears = dict(_projections(model))
    hessians: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in linears.items():
        key = _input_key(name)
        if key not in hessians:
            hessians[key] = torch.zeros(module.in_features, module.in_features)
            hooks.append(module.register_forward_pre_hook(_accumulate(hessians[key])))
    try:
        forward_over(model, ids, min(sequence, checkpoint.config.max_position_embeddings))
    finally:
        for hook in hooks:
            hook.remove()
    rounded = {}
    for name, module in linears.items():
        weight = module.weight.detach().T.numpy().astype(np.float64)  # [in, out]
        width = lm_head_bits if module is model.lm_head else bits
        q = gptq(weight, hessians[_input_key(name)].numpy().astype(np.float64), width, block_size, symmetric)
        rounded[name + WEIGHT_SUFFIX] = q.astype(np.float32)
    return rounded


def gptq(weight: np.ndarray, hessian: np.ndarray, bits: int, block_size: int, symmetric: bool) -> np.ndarray:
    """GPTQ of `weight` [K, N] under `hessian` [K, K]; returns the rounded weight (floats on the grid).

    Rows (input channels) are rounded in order; the error of row i, divided by U[i, i], is
    subtracted from the later rows along row i of U, the upper Cholesky factor of H^-1
    (H dampened by PERCDAMP of its mean diagonal), lazily per GPTQ_BLOCK rows. A block's grid
    is set when its first row is reached, from its rows as updated so far.
    """
    w = weight.astype(np.float64).copy()
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) == 0  # inputs never seen: any value is exact
    h[dead, dead] = 1.0
    w[dead, :] = 0.0
    h[np.diag_indices_from(h)] += PERCDAMP * np.mean(np.diag(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T
    rows = w.shape[0]
    q = np.zeros_like(w)
    for start in range(0, rows, GPTQ_BLOCK):
        stop = min(start + GPTQ_BLOCK, rows)
        chunk, errors, u = w[start:stop].copy(), np.zeros((stop - start, w.shape[1])), upper[start:stop, start:stop]
        for i in range(stop - start):
            if (start + i) % block_size == 0:
                scale, zero = _grid(chunk[i : i + block_size], bits, symmetric)
            q[start + i] = _round(chunk[i], scale, zero, bits)
            errors[i] = (chunk[i] - q[start + i]) / u[i, i]
            chunk[i:] -= np.outer(u[i, i:], errors[i])
        w[stop:] -= upper[start:stop, stop:].T @ errors
    return q


def _grid(rows: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) per column of one block, as onnxruntime's blockwise quantizer (MLAS) sets them."""
    levels = 2**bits - 1
    if symmetric:  # the signed value of largest magnitude maps to -2^(bits-1)
        lo, hi = rows.min(axis=0), rows.max(axis=0)
        extreme = np.where(np.abs(lo) > np.abs(hi), lo, hi)
        scale = extreme / -(2 ** (bits - 1))
        zero = np.full_like(scale, 2 ** (bits - 1))
    else:
        lo, hi = np.minimum(rows.min(axis=0), 0.0), np.maximum(rows.max(axis=0), 0.0)
        scale = (hi - lo) / levels
        zero = np.clip(np.round(-lo / np.where(scale == 0, 1.0, scale)), 0, levels)
    return np.where(scale == 0, 1.0, scale), zero


def _round(row: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    return (np.clip(np.round(row / scale) + zero, 0, 2**bits - 1) - zero) * scale


def _projections(model: Exaone4ForCausalLM):
    """(module name, Linear) of every projection and of an untied lm_head."""
    tied = model.config.tie_word_embeddings
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not (tied and module is model.lm_head):
            yield name, module


def _input_key(name: str) -> str:
    parent, _, leaf = name.rpartition(".")
    return f"{parent}.{SHARED_INPUTS.get(leaf, leaf)}"


def _accumulate(hessian: torch.Tensor):
    def hook(_module, args):
        x = args[0].reshape(-1, args[0].shape[-1]).float()
        hessian.add_(x.T @ x)

    return hook
