"""The Flink job's health in /healthz: `"job": {"state", "restarts", "last_exception"}`.

A job whose sink cannot write restarts in a loop while every stream on the page freezes; this
is how the page (its banner) and `curl /healthz` learn it. Read from the Flink REST API of the
job that `python -m runner run` records in its pid file (--runner-pid-file), or, without one,
the newest job on --flink-rest-port when that is set. `state` is Flink's
(RUNNING, RESTARTING, FAILING, FAILED, ...) or NOT_RUNNING; `last_exception` is the first line
of the newest exception in the job's history, or null.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.settings import Settings
from runner.flink_rest import runner_job_health

CACHE_S = 1.0  # /healthz may be polled by every page; Flink is asked at most once a second


class JobHealth:
    def __init__(self, pid_file: Path, rest_port: int | None, timeout_s: float = 2.0) -> None:
        self.pid_file = pid_file
        self.rest_port = rest_port
        self.timeout_s = timeout_s
        self._value: dict | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> JobHealth:
        return cls(settings.runner_pid_file, settings.flink_rest_port)

    async def get(self) -> dict:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at > CACHE_S:
                self._value = await asyncio.to_thread(
                    runner_job_health, self.pid_file, self.rest_port, self.timeout_s
                )
                self._at = time.monotonic()
            return self._value


async def job_health(app) -> dict:
    """The job's health for this app (one reader per app, made on first use)."""
    reader = getattr(app.state, "job_health", None)
    if reader is None:
        reader = app.state.job_health = JobHealth.from_settings(app.state.settings)
    return await reader.get()
