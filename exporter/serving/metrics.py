"""The engine's metrics, defined once: what Triton's metrics endpoint shows (`MetricFamily` in the glue).

`MetricsObserver` turns the scheduler's reports into metric updates through a
factory that the glue backs with `pb_utils.MetricFamily` (tests with a recorder),
so this module knows nothing of Triton.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .requests import Finish
from .scheduler import Observer

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # COUNTER, GAUGE or HISTOGRAM
    description: str
    buckets: tuple[float, ...] = ()


ACTIVE = MetricSpec("exaone4_active_slots", GAUGE, "Sequence slots in use (prefilling or decoding)")
QUEUED = MetricSpec("exaone4_queue_length", GAUGE, "Requests waiting for a slot")
TOKENS = MetricSpec("exaone4_generated_tokens_total", COUNTER, "Tokens generated, all requests")
FINISHED = MetricSpec("exaone4_requests_finished_total", COUNTER, "Requests that left the engine, by reason (label finish)")
TTFT = MetricSpec("exaone4_time_to_first_token_seconds", HISTOGRAM, "From arrival to the first token", LATENCY_BUCKETS)
ITL = MetricSpec("exaone4_inter_token_latency_seconds", HISTOGRAM, "Between consecutive tokens of a request", LATENCY_BUCKETS)
METRICS = (ACTIVE, QUEUED, TOKENS, FINISHED, TTFT, ITL)

# (spec, labels) -> an object with increment / set / observe, as pb_utils.MetricFamily(...).Metric(...) gives
MetricFactory = Callable[[MetricSpec, dict[str, str]], Any]


class MetricsObserver(Observer):
    def __init__(self, metric: MetricFactory, labels: dict[str, str]) -> None:
        self.active, self.queued = metric(ACTIVE, labels), metric(QUEUED, labels)
        self.tokens, self.ttft, self.itl = metric(TOKENS, labels), metric(TTFT, labels), metric(ITL, labels)
        self.finished_by = {finish: metric(FINISHED, {**labels, "finish": finish.value}) for finish in Finish}

    def token(self, first: bool, seconds: float) -> None:
        self.tokens.increment(1)
        (self.ttft if first else self.itl).observe(seconds)

    def finished(self, finish: Finish) -> None:
        self.finished_by[finish].increment(1)

    def gauges(self, active: int, queued: int) -> None:
        self.active.set(active)
        self.queued.set(queued)
