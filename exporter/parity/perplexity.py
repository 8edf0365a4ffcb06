"""The perplexity scenario: the reference and an export scored on real text, at every position.

    text = read_text(path, export_dir)        # path None: the bundled model's held-out text
    entry = run_perplexity(reference, layout, {"ort": (runner, layout)}, text, window=512, tolerance=...)

The synthetic scenarios feed random tokens, where a model's distributions are flat
and unlike its real use; this one feeds text. The text is tokenized with the
export's own tokenizer and cut into windows of at most `window` tokens, each
starting on the previous window's last token, so every token but the first is
predicted exactly once. Each window is one prefill (positions from 0) on the
reference and on each backend; per position the next token's NLL under both,
KL(reference || backend) and argmax agreement are kept (a few floats, not the
logits), and summarized over the whole text: perplexities, their relative
difference, top-1 agreement, mean and max KL (docs/parity-report.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..chat import ChatTokenizer
from ..contract import CacheLayout
from ..errors import InputError
from ..runners import Runner
from ..tiny import HELDOUT_SOURCE, HELDOUT_TEXT
from .metrics import next_token_metrics, perplexity_summary
from .tolerances import PerplexityTolerance

NAME = "perplexity"
DEFAULT_WINDOW = 512
# The backends that run the export itself; transformers runs the checkpoint (a second reference, compared
# with ours by the other scenarios), and the trt backend is not scored here yet.
BACKENDS = ("ort",)
NOT_SCORED = f"the {NAME} scenario scores {', '.join(BACKENDS)} only"


@dataclass(frozen=True)
class Text:
    """A text to score, tokenized: where it came from, its bytes' sha256, its token ids."""

    source: str
    sha256: str
    characters: int
    ids: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "characters": self.characters, "tokens": len(self.ids)}


def read_text(path: Path | None, tokenizer_dir: Path) -> Text:
    """`path` (UTF-8) or, for None, the bundled held-out text, tokenized by the tokenizer in `tokenizer_dir`.

    Bad input (unreadable, not UTF-8, fewer than 2 tokens) is an InputError naming the file.
    """
    where = str(path if path is not None else HELDOUT_TEXT)
    try:
        raw = Path(where).read_bytes()
    except OSError as exc:
        raise InputError(where, f"cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(where, f"is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    ids = ChatTokenizer.open(tokenizer_dir).encode(text)
    if len(ids) < 2:
        raise InputError(where, f"has {len(ids)} token(s); a perplexity needs at least 2")
    source = HELDOUT_SOURCE if path is None else str(Path(path).resolve())
    return Text(source, hashlib.sha256(raw).hexdigest(), len(text), tuple(ids))


def windows(count: int, size: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `size` (>= 2) tokens over `count`, each starting on the previous one's
    last token: every token but the first is the target of exactly one position."""
    if size < 2:
        raise ValueError(f"a window needs at least 2 tokens, got {size}")
    spans, start = [], 0
    while start < count - 1:
        end = min(start + size, count)
        spans.append((start, end))
        start = end - 1
    return spans


def _prefill(runner: Runner, layout: CacheLayout, ids: np.ndarray) -> np.ndarray:
    """Logits [S, vocab] of one unpadded prefill."""
    return runner.new_session(layout).prefill(ids[None])[0]


def run_perplexity(
    reference: Runner,
    reference_layout: CacheLayout,
    backends: dict[str, tuple[Runner, CacheLayout]],
    text: Text | None,
    window: int,
    tolerance: PerplexityTolerance,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Score the text on the reference and each backend; the report's `perplexity` entry, less `skipped`.

    With no backend to score nothing runs (and `text` may be None: there was none to read).
    """
    spans = windows(len(text.ids), window) if text is not None and backends else []
    parts: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in backends}
    for index, (start, end) in enumerate(spans):
        progress(f"{NAME}: window {index + 1} of {len(spans)}")
        ids = np.array(text.ids[start:end], np.int64)
        expected = _prefill(reference, reference_layout, ids)[:-1]
        for name, (runner, layout) in backends.items():
            parts[name].append(next_token_metrics(expected, _prefill(runner, layout, ids)[:-1], ids[1:]))
    results = {}
    for name, per_window in parts.items():
        summary = perplexity_summary({key: np.concatenate([p[key] for p in per_window]) for key in per_window[0]})
        failures = perplexity_failures(summary, tolerance)
        results[name] = {"passed": not failures, "failures": failures, **summary}
    return {
        "text": text.to_dict() if text is not None else None,
        "window": window,
        "windows": len(spans),
        "positions": len(text.ids) - 1 if spans else 0,
        "reference_perplexity": next(iter(results.values()))["reference_perplexity"] if results else None,
        "tolerance": tolerance.to_dict(),
        "results": results,
    }


def perplexity_failures(summary: dict[str, float], tolerance: PerplexityTolerance) -> list[str]:
    """What in a backend's summary leaves the tolerance, one message each."""
    failures = []
    if not abs(summary["rel_diff"]) <= tolerance.ppl_rel:  # not <=: a NaN perplexity fails too
        failures.append(f"perplexity {summary['perplexity']:.6g} vs the reference's {summary['reference_perplexity']:.6g}: "
                        f"relative difference {summary['rel_diff']:+.3g} beyond {tolerance.ppl_rel:g}")
    if tolerance.top1 is not None and not summary["top1"] >= tolerance.top1:
        failures.append(f"top-1 agreement on the text {summary['top1']:.4g} < {tolerance.top1:g}")
    if tolerance.kl_mean is not None and not summary["kl_mean"] <= tolerance.kl_mean:
        failures.append(f"mean next-token KL on the text {summary['kl_mean']:.3g} > {tolerance.kl_mean:g}")
    return failures
