"""The Flink REST API, as the runner's tools use it: job state, stop with a savepoint, health.

No PyFlink import here: `make status` and the gateway read a job's health through it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path


def rest(port: int, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def job_state(port: int, job_id: str) -> str:
    return str(rest(port, f"/jobs/{job_id}").get("state", "UNKNOWN"))


def first_line(text: str | None, limit: int = 300) -> str | None:
    if not text:
        return None
    line = text.strip().splitlines()[0].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def job_health(port: int, job_id: str, timeout: float = 3.0) -> dict:
    """{"state": ..., "restarts": N, "last_exception": one line | None} of a job.

    The contract shared with the gateway's /healthz and the dashboard's banner: a job that
    restarts in a loop (a sink whose topic is gone, a poison record) shows here."""
    details = rest(port, f"/jobs/{job_id}", timeout=timeout)
    restarts = 0
    try:
        metric = rest(port, f"/jobs/{job_id}/metrics?get=numRestarts", timeout=timeout)
        restarts = int(float(metric[0]["value"])) if metric else 0
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    last = None
    try:
        history = rest(port, f"/jobs/{job_id}/exceptions?maxExceptions=1", timeout=timeout)
        entries = history.get("exceptionHistory", {}).get("entries", [])
        if entries:
            last = first_line(entries[0].get("stacktrace")) or entries[0].get("exceptionName")
    except (OSError, ValueError):
        pass
    return {"state": str(details.get("state", "UNKNOWN")), "restarts": restarts,
            "last_exception": last}  # fmt: skip


NOT_RUNNING = {"state": "NOT_RUNNING", "restarts": 0, "last_exception": None}


def runner_job_health(pid_file: Path, rest_port: int | None = None, timeout: float = 2.0) -> dict:
    """Health of the job `python -m runner run` hosts: its pid file names the job and the REST
    port; without one, the newest job on rest_port. NOT_RUNNING when nothing answers."""
    job_id = None
    try:
        state = json.loads(pid_file.read_text())
        job_id, rest_port = str(state["job_id"]), int(state["rest_port"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if rest_port is None:
        return dict(NOT_RUNNING)
    try:
        if job_id is None:
            jobs = rest(rest_port, "/jobs/overview", timeout=timeout).get("jobs", [])
            if not jobs:
                return dict(NOT_RUNNING)
            job_id = max(jobs, key=lambda j: j.get("start-time", 0))["jid"]
        return job_health(rest_port, job_id, timeout)
    except urllib.error.HTTPError as exc:  # the runner restarted: its old job is unknown
        return {**NOT_RUNNING, "state": "UNKNOWN", "last_exception": f"Flink REST: {exc}"}
    except (TimeoutError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            return dict(NOT_RUNNING)  # nothing listens: the runner is gone
        return {**NOT_RUNNING, "state": "UNKNOWN", "last_exception": f"Flink REST: {reason}"}
    except (OSError, ValueError):
        return dict(NOT_RUNNING)


def running_job(port: int, timeout: float = 3.0) -> dict | None:
    """The job (its /jobs/overview entry) that runs with every task running, or None.

    The one "job RUNNING" check of `make up`, the cluster, the benchmarks and the tests."""
    for job in rest(port, "/jobs/overview", timeout=timeout).get("jobs", []):
        tasks = job.get("tasks", {})
        if job.get("state") == "RUNNING" and tasks.get("running") == tasks.get("total"):
            return job
    return None
