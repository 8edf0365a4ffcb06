"""Error metrics between a backend's outputs and the reference's, for one step.

All metrics are computed in float64 on numpy arrays. Relative errors divide by
the reference's largest magnitude (a per-element ratio explodes where the
reference is near zero and says nothing); p99 is over elements.
"""

from __future__ import annotations

import numpy as np


def tensor_errors(expected: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """max / mean / p99 absolute error, the same relative to max |expected|, and cosine."""
    a = np.asarray(expected, np.float64).ravel()
    b = np.asarray(got, np.float64).ravel()
    if a.size == 0:
        return {"max_abs": 0.0, "mean_abs": 0.0, "p99_abs": 0.0, "max_rel": 0.0, "mean_rel": 0.0, "p99_rel": 0.0, "cosine": 1.0}
    diff = np.abs(a - b)
    scale = max(float(np.abs(a).max()), 1e-30)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "p99_abs": float(np.percentile(diff, 99)),
        "max_rel": float(diff.max() / scale),
        "mean_rel": float(diff.mean() / scale),
        "p99_rel": float(np.percentile(diff, 99) / scale),
        "cosine": float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b)),
    }


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def logits_metrics(expected: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Over positions [N, vocab]: errors, min cosine per position, KL(ref || got), top-1/top-5 agreement.

    top5 is the mean overlap of the two top-5 sets (|A & B| / 5).
    """
    a = np.asarray(expected, np.float64).reshape(-1, expected.shape[-1])
    b = np.asarray(got, np.float64).reshape(-1, got.shape[-1])
    metrics = tensor_errors(a, b)
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)
    log_p, log_q = _log_softmax(a), _log_softmax(b)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    top5_a = np.argsort(-a, axis=-1)[:, :5]
    top5_b = np.argsort(-b, axis=-1)[:, :5]
    overlap = [len(set(x) & set(y)) / 5 for x, y in zip(top5_a, top5_b)]
    metrics.update(
        cosine=float(cos.min()),
        kl=float(kl.mean()),
        kl_max=float(kl.max()),
        top1=float((a.argmax(-1) == b.argmax(-1)).mean()),
        top5=float(np.mean(overlap)),
    )
    return metrics


def next_token_metrics(expected: np.ndarray, got: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per position of logits [N, vocab] whose next tokens are `targets` [N]: what perplexity is made of.

    nll_reference / nll: -log p(target) under the reference / the backend;
    kl: KL(reference || backend) of the next-token distributions; top1: whether the argmaxes agree.
    """
    a = np.asarray(expected, np.float64).reshape(-1, expected.shape[-1])
    b = np.asarray(got, np.float64).reshape(-1, got.shape[-1])
    rows, targets = np.arange(a.shape[0]), np.asarray(targets).reshape(-1)
    log_p, log_q = _log_softmax(a), _log_softmax(b)
    return {
        "nll_reference": -log_p[rows, targets],
        "nll": -log_q[rows, targets],
        "kl": (np.exp(log_p) * (log_p - log_q)).sum(-1),
        "top1": a.argmax(-1) == b.argmax(-1),
    }


def perplexity_summary(per_position: dict[str, np.ndarray]) -> dict[str, float]:
    """Perplexities exp(mean NLL), the backend's relative difference (signed), top-1 agreement, mean / max KL."""
    reference = float(np.exp(per_position["nll_reference"].mean()))
    perplexity = float(np.exp(per_position["nll"].mean()))
    return {
        "reference_perplexity": reference,
        "perplexity": perplexity,
        "rel_diff": perplexity / reference - 1.0,
        "top1": float(per_position["top1"].mean()),
        "kl_mean": float(per_position["kl"].mean()),
        "kl_max": float(per_position["kl"].max()),
    }


def greedy_match_length(expected: list[int], got: list[int]) -> int:
    """How many leading tokens of two greedy continuations agree."""
    length = 0
    for x, y in zip(expected, got):
        if x != y:
            break
        length += 1
    return length
