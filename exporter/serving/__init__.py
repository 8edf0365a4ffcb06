"""The resident generation engine: a fixed pool of KV-cache slots and an in-flight batching scheduler.

Plain Python over numpy and the Runner interface, with no Triton import, so it is
unit-tested in-process and shipped unchanged into the Triton repository
(exporter/triton_models/engine.py is the glue):

    pool = SlotPool(runner, layout, max_batch=8, max_context=512)   # buffers allocated once
    scheduler = Scheduler(pool, EngineConfig(max_batch=8, max_context=512))
    scheduler.submit(GenerationRequest(prompt_ids, max_tokens=64), client)
    while scheduler.step(): ...            # or ServingLoop(scheduler).start()

docs/triton.md describes the design and its knobs.
"""

from .config import EngineConfig, EngineSpec
from .inputs import ChatRequest
from .loop import ServingLoop
from .metrics import METRICS, MetricsObserver, MetricSpec
from .requests import Client, Finish, GenerationRequest, QueueFull
from .scheduler import Observer, Scheduler
from .slots import GrowingSlotPool, SlotPool, pool_bytes, pool_lengths, pool_max_chunk
from .text import TextClient

__all__ = [
    "METRICS",
    "ChatRequest",
    "Client",
    "EngineConfig",
    "EngineSpec",
    "Finish",
    "GenerationRequest",
    "GrowingSlotPool",
    "MetricSpec",
    "MetricsObserver",
    "Observer",
    "QueueFull",
    "Scheduler",
    "ServingLoop",
    "SlotPool",
    "TextClient",
    "pool_bytes",
    "pool_lengths",
    "pool_max_chunk",
]
