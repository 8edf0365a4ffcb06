"""In-flight batching: requests join and leave a running batch at every step boundary.

One `step()`:
1. requests whose client cancelled leave (waiting ones, and running ones: slot freed);
2. waiting requests take free slots, oldest first (the queue is bounded: `submit`
   refuses with QueueFull when `max_queue` are already waiting);
3. prompts enter their slots in chunks, at most `prefill_budget()` tokens per step
   (at least one chunk), oldest admission first; the last chunk's logits give the
   request's first token. The budget is `prefill_chunk`, or, while streams decode,
   what the measured prefill speed fits in `prefill_stall` decode steps' time: a
   long prompt then costs the running streams a bounded gap per step on any
   hardware. Chunk boundaries then depend on the load, which moves a prompt's
   numbers at the rounding level only (prefill_stall 0 makes them the prompt's alone);
4. one batched decode call advances every slot that has a token to feed.

A request leaves its slot on a stop token, at `max_tokens`, when cancelled, or when
something fails for it alone (sampling, its client); a failed runner call fails the
requests that were in it, and the engine carries on. Each request samples with its
own `Sampling` and seeded generator. `submit` may be called from any thread; `step`
from one thread only (ServingLoop's).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..chat.sampling import choose_token
from ..errors import InputError
from .config import EngineConfig
from .requests import Client, Finish, GenerationRequest, QueueFull
from .slots import SlotPool

MIN_CHUNK = 16  # prompt tokens a step prefills at least, however slow prefill is measured to be
SMOOTHING = 0.25  # weight of the newest sample in the measured call times


class Observer:
    """What the scheduler reports as it runs (metrics); these defaults ignore it."""

    def token(self, first: bool, seconds: float) -> None:
        """A token was produced: `seconds` since the request arrived (first) or since its previous token."""

    def finished(self, finish: Finish) -> None:
        """A request left (or never got) its slot."""

    def gauges(self, active: int, queued: int) -> None:
        """After every step: slots in use, requests waiting."""


@dataclass(eq=False)
class _Sequence:
    """One request's progress; touched by the stepping thread only once admitted."""

    request: GenerationRequest
    client: Client
    arrived: float
    slot: int = -1
    cached: int = 0  # prompt tokens in the slot so far
    produced: int = 0
    next_token: int = -1  # the token to feed at the next decode
    last_time: float = 0.0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = self.request.sampling.generator()


class Scheduler:
    def __init__(self, pool: SlotPool, config: EngineConfig, observer: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` stamps tokens for the latency metrics and times model calls for the prefill budget."""
        if min(config.prefill_chunk, pool.max_context) > pool.max_chunk:  # a wrapping ring's bound
            raise InputError("prefill_chunk", f"{config.prefill_chunk} tokens a call exceeds the {pool.max_chunk} this cache takes "
                             "(a sliding layer's ring is exact for that many on top of its past)")
        self.pool = pool
        self.config = config
        self.observer = observer or Observer()
        self.clock = clock
        self._waiting: deque[_Sequence] = deque()
        self._prefilling: list[_Sequence] = []  # admitted, prompt not wholly cached; admission order
        self._decoding: list[_Sequence] = []
        self._wake = threading.Condition()
        self._decode_s = 0.0  # a decode step's time, smoothed (0: not measured yet)
        self._token_s = 0.0  # a prefilled token's time, smoothed

    # ------------------------------------------------------------------ any thread

    def submit(self, request: GenerationRequest, client: Client) -> None:
        """Queue a request; InputError when it can never run, QueueFull when the queue is full."""
        self._check(request)
        with self._wake:
            free = self.pool.capacity - self.pool.in_use  # those ahead that will take a free slot at the next step do not wait
            if len(self._waiting) >= self.config.max_queue + free:
                self.observer.finished(Finish.REJECTED)
                raise QueueFull(f"the engine's queue is full ({self.config.max_queue} requests waiting for "
                                f"{self.pool.capacity} slots); retry later")
            self._waiting.append(_Sequence(request, client, self.clock()))
            self._wake.notify()

    def _check(self, request: GenerationRequest) -> None:
        if not request.prompt:
            raise InputError("prompt", "is empty")
        if request.max_tokens < 1:
            raise InputError("max_tokens", f"must be at least 1, got {request.max_tokens}")
        if len(request.prompt) + request.max_tokens > self.pool.max_context:
            raise InputError("max_tokens", f"prompt of {len(request.prompt)} tokens plus max_tokens {request.max_tokens} "
                             f"exceeds the context of {self.pool.max_context}")

    @property
    def queued(self) -> int:
        with self._wake:
            return len(self._waiting)

    @property
    def active(self) -> int:
        return self.pool.in_use

    def wake(self) -> None:
        """Return `wait_for_work` at once (the loop is stopping)."""
        with self._wake:
            self._wake.notify_all()

    def wait_for_work(self, timeout: float) -> None:
        """Block until a request arrives (or `timeout`), unless there is work already."""
        with self._wake:
            if not (self._waiting or self._prefilling or self._decoding):
                self._wake.wait(timeout)

    # ------------------------------------------------------------------ the stepping thread

    def step(self) -> bool:
        """One step boundary: cancellations, admissions, prefill chunks, one decode. Returns whether a model call ran."""
        self._drop_cancelled()
        self._admit()
        ran = self._prefill()
        ran = self._decode() or ran
        self.observer.gauges(self.active, self.queued)
        return ran

    def abort(self, reason: str) -> None:
        """Fail every waiting and running request (the model is being unloaded)."""
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
        for sequence in [*waiting, *self._prefilling, *self._decoding]:
            self._finish(sequence, Finish.ERROR, reason)

    def _drop_cancelled(self) -> None:
        with self._wake:
            waiting = list(self._waiting)
        for sequence in [*waiting, *self._prefilling, *self._decoding]:
            if self._is_cancelled(sequence):
                self._finish(sequence, Finish.CANCELLED)

    def _is_cancelled(self, sequence: _Sequence) -> bool:
        try:
            return bool(sequence.client.cancelled())
        except Exception:  # a client that cannot say is gone
            return True

    def _admit(self) -> None:
        while True:
            with self._wake:
                if not self._waiting or self.pool.in_use == self.pool.capacity:
                    return
                sequence = self._waiting.popleft()
            sequence.slot = self.pool.acquire()
            self._prefilling.append(sequence)

    def prefill_budget(self) -> int:
        """Prompt tokens this step may prefill: prefill_chunk; while streams decode, no more than the measured
        prefill speed fits in prefill_stall decode steps' time (and at least MIN_CHUNK, so prompts advance)."""
        full, stall = self.config.prefill_chunk, self.config.prefill_stall
        if not (stall and self._decoding and self._decode_s):
            return full
        if not self._token_s:  # prefill speed not measured yet: a small chunk measures it
            return min(full, MIN_CHUNK)
        # the time per token includes the call's fixed cost at the current size, so this converges on the
        # chunk whose whole call takes stall decode steps
        return min(full, max(MIN_CHUNK, int(stall * self._decode_s / self._token_s)))

    def _prefill(self) -> bool:
        limit = self.prefill_budget()
        budget, ran = limit, False
        for sequence in list(self._prefilling):
            prompt = sequence.request.prompt
            while sequence.cached < len(prompt):
                chunk = prompt[sequence.cached : sequence.cached + limit]
                if ran and len(chunk) > budget:
                    return ran
                started = self.clock()
                try:
                    logits = self.pool.append(sequence.slot, np.asarray(chunk, np.int64))
                except Exception as exc:  # this prompt's call failed: it alone leaves
                    self._finish(sequence, Finish.ERROR, f"prefill failed: {exc}")
                    break
                if len(chunk) >= MIN_CHUNK:  # a shorter call's time is mostly the fixed cost of any call
                    self._token_s = _smoothed(self._token_s, (self.clock() - started) / len(chunk))
                budget, ran = budget - len(chunk), True
                sequence.cached += len(chunk)
            else:
                self._prefilling.remove(sequence)
                self._decoding.append(sequence)
                self._emit(sequence, logits)
        return ran

    def _decode(self) -> bool:
        batch = [s for s in self._decoding if s.next_token >= 0]
        if not batch:
            return False
        started = self.clock()
        try:
            logits = self.pool.decode([s.slot for s in batch], [s.next_token for s in batch])
        except Exception as exc:  # the call failed: the requests in it leave, the engine carries on
            for sequence in batch:
                self._finish(sequence, Finish.ERROR, f"decode failed: {exc}")
            return True
        self._decode_s = _smoothed(self._decode_s, self.clock() - started)
        for sequence, row in zip(batch, logits):
            self._emit(sequence, row)
        return True

    def _emit(self, sequence: _Sequence, logits: np.ndarray) -> None:
        """Choose the next token from `logits`, report it, and decide whether the request goes on."""
        sequence.next_token = -1
        try:
            token = choose_token(np.asarray(logits, np.float32), sequence.request.sampling, sequence.rng)
        except Exception as exc:
            self._finish(sequence, Finish.ERROR, f"sampling failed: {exc}")
            return
        now = self.clock()
        first = sequence.produced == 0
        self.observer.token(first, now - (sequence.arrived if first else sequence.last_time))
        sequence.produced, sequence.last_time = sequence.produced + 1, now
        if token in sequence.request.stop_ids:
            self._finish(sequence, Finish.STOP)
            return
        try:
            sequence.client.on_token(token)
        except Exception as exc:
            self._finish(sequence, Finish.ERROR, f"sending failed: {exc}")
            return
        if sequence.produced >= sequence.request.max_tokens:
            self._finish(sequence, Finish.LENGTH)
        else:
            sequence.next_token = token

    def _finish(self, sequence: _Sequence, finish: Finish, error: str | None = None) -> None:
        """Take the request out of wherever it is, free its slot, tell its client (once)."""
        with self._wake:
            if sequence in self._waiting:
                self._waiting.remove(sequence)
        for group in (self._prefilling, self._decoding):
            if sequence in group:
                group.remove(sequence)
        if sequence.slot >= 0:
            self.pool.release(sequence.slot)
            sequence.slot = -1
        self.observer.finished(finish)
        try:
            sequence.client.on_finish(finish, error)
        except Exception:  # nothing more can be told to a client that fails here
            pass


def _smoothed(previous: float, sample: float) -> float:
    """An exponential moving average that starts at its first sample."""
    return sample if not previous else previous + SMOOTHING * (sample - previous)
