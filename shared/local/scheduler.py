"""The local stand-in for EventBridge: a daemon thread that runs a task now and then every interval."""

from __future__ import annotations

import threading
from collections.abc import Callable

from shared.observability import logger


class PeriodicTask:
    """Runs `task` at start and every `interval_s` seconds until stopped; a failing run is logged, not fatal."""

    def __init__(
        self, interval_s: float, task: Callable[[], object], *, name: str, on_exit: Callable[[], object] | None = None
    ):
        self.interval_s = interval_s
        self._task = task
        self._on_exit = on_exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.runs = 0

    def start(self) -> PeriodicTask:
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._task()
                except Exception:
                    logger.exception("scheduled task failed", extra={"task": self._thread.name})
                self.runs += 1
                self._stop.wait(self.interval_s)
        finally:
            if self._on_exit is not None:
                self._on_exit()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
