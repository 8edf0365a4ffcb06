"""The scheduler's own thread: step while there is work, sleep until a request arrives."""

from __future__ import annotations

import threading

from .scheduler import Scheduler

IDLE_WAIT_S = 0.05  # how long an idle loop sleeps before looking again (cancellations of waiting requests)


class ServingLoop:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exaone4-engine", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, reason: str = "the model is being unloaded") -> None:
        """Stop stepping, then fail whatever is still waiting or running with `reason`."""
        self._stop.set()
        self.scheduler.wake()
        self._thread.join()
        self.scheduler.abort(reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.scheduler.step():
                    self.scheduler.wait_for_work(IDLE_WAIT_S)
            except BaseException as exc:  # a bug in the engine: fail the requests, keep the thread alive
                self.error = exc
                self.scheduler.abort(f"engine error: {exc}")
