"""Hot reload of sql/: validate first, then stop the running job with a savepoint and resubmit.

    python -m runner reload [--pid-file .run/runner.json]

The job is hosted by the `python -m runner run` process, which records itself in the pid file
(pid, job id, REST port, sql dir). `reload`:
  1. validates the runner's sql/ exactly as `check` does (headers, Flink's parser and planner);
     any error is printed as file:line:col and the running job is left untouched (exit 2);
  2. sends SIGHUP to the runner, which validates again, stops its job with a savepoint through
     the REST API (POST /jobs/<id>/stop, drain off) and submits the new plan restored from it
     (unclaimed state ignored); if the new plan cannot start, the old one is resubmitted;
  3. waits until the pid file names the new job, and prints it.

What restarts from scratch: Flink SQL gives operators no stable ids, so state is matched by the
operator graph's structure. An edit that keeps the graph (a threshold, a comment) restores
everything. An edit that changes it (a new output, a new column or window) starts the changed
operators empty: their windows refill, indicator history warms up again (up to 33 candles for
MACD), and a source whose state is dropped resumes from the consumer group's committed
offsets, so nothing already consumed is read twice. Exactly-once sinks keep their
transactional-id prefixes, so a reload never duplicates committed rows.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from runner import job
from runner.settings import Settings

# --- the pid file ---------------------------------------------------------------------------


def write_state(settings: Settings, job_id: str, **extra: object) -> None:
    settings.pid_file.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": os.getpid(),
        "job_id": job_id,
        "rest_port": settings.rest_port,
        "sql_dir": str(settings.sql_dir),
        "only": settings.only,
        "updated": time.time(),
        **extra,
    }
    tmp = settings.pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(settings.pid_file)


def read_state(pid_file: Path) -> dict | None:
    try:
        state = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        return None  # the runner is gone: a stale file
    return state


# --- the REST API ---------------------------------------------------------------------------


def _rest(port: int, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
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
    return str(_rest(port, f"/jobs/{job_id}").get("state", "UNKNOWN"))


def stop_with_savepoint(port: int, job_id: str, target: Path, timeout_s: float = 120.0) -> str:
    """Stop the job with a savepoint (no drain: windows are not flushed); return its path."""
    target.mkdir(parents=True, exist_ok=True)
    trigger = _rest(
        port, f"/jobs/{job_id}/stop", {"targetDirectory": target.resolve().as_uri(), "drain": False}
    )
    request_id = trigger["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _rest(port, f"/jobs/{job_id}/savepoints/{request_id}")
        if status.get("status", {}).get("id") == "COMPLETED":
            operation = status.get("operation", {})
            if "location" in operation:
                return str(operation["location"])
            raise RuntimeError(f"savepoint failed: {operation.get('failure-cause')}")
        time.sleep(0.5)
    raise TimeoutError(f"no savepoint of job {job_id} within {timeout_s:.0f} s")


# --- the client: `python -m runner reload` --------------------------------------------------


def reload(settings: Settings, timeout_s: float = 180.0) -> int:
    from runner.cli import _report, validate

    state = read_state(settings.pid_file)
    if state is None:
        print(
            f"runner: no running job recorded in {settings.pid_file}: start one with "
            "`python -m runner run`",
            file=sys.stderr,
        )
        return 1
    settings.sql_dir = Path(state["sql_dir"])
    settings.only = list(state.get("only") or [])
    try:
        validate(settings)
    except job.PlanError as exc:
        code = _report(exc.errors)
        print(f"runner: job {state['job_id']} keeps running unchanged", file=sys.stderr)
        return code
    old_job = state["job_id"]
    asked = time.time()
    os.kill(int(state["pid"]), signal.SIGHUP)
    print(f"runner: sql/ is valid; asked runner {state['pid']} to reload job {old_job}", flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = read_state(settings.pid_file)
        if now is None:
            print("runner: the runner exited during the reload", file=sys.stderr)
            return 1
        if now.get("reload_error_at", 0) >= asked:
            print(f"runner: reload failed: {now.get('reload_error')}", file=sys.stderr)
            print(f"runner: job {now['job_id']} is running", file=sys.stderr)
            return 1
        if now["job_id"] != old_job:
            print(f"runner: job {now['job_id']} running, restored from {now.get('restored_from')}")
            return 0
    print(f"runner: no new job within {timeout_s:.0f} s", file=sys.stderr)
    return 1


# --- the server: the `python -m runner run` process -----------------------------------------


class LiveJob:
    """The job this process hosts: start, stop, and restart from a savepoint on SIGHUP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.job_client = None
        self.current: tuple | None = None  # (t_env, plan, statement_set) of the running job

    @property
    def job_id(self) -> str:
        return str(self.job_client.get_job_id()) if self.job_client else "?"

    def start(self, t_env, plan, statement_set, restore: Path | None) -> None:
        for key, value in job.streaming_config(self.settings, restore).items():
            t_env.get_config().set(key, value)
        self.job_client = statement_set.execute().get_job_client()
        self.current = (t_env, plan, statement_set)
        write_state(self.settings, self.job_id, restored_from=str(restore) if restore else None)
        print(
            f"runner: job {self.job_id} running {len(plan.outputs)} outputs "
            f"({', '.join(o.name for o in plan.outputs)}); "
            + (f"restored from {restore}" if restore else "fresh state")
            + f"; web UI http://127.0.0.1:{self.settings.rest_port}",
            flush=True,
        )

    def status(self) -> str:
        return str(self.job_client.get_job_status().result())

    def cancel(self) -> None:
        try:
            self.job_client.cancel().result(30)
        except Exception:
            pass

    def _failed(self, message: str) -> None:
        print(f"runner: reload failed: {message}", file=sys.stderr, flush=True)
        write_state(
            self.settings,
            self.job_id,
            reload_error=message,
            reload_error_at=time.time(),
        )

    def reload(self) -> None:
        from runner.cli import validate

        print("runner: reload requested: validating sql/", flush=True)
        try:
            t_env, plan, statement_set = validate(self.settings)
        except job.PlanError as exc:
            for err in exc.errors:
                print(err, file=sys.stderr)
            self._failed(f"{len(exc.errors)} problem(s) in sql/; the job was not touched")
            return
        try:
            location = stop_with_savepoint(
                self.settings.rest_port, self.job_id, self.settings.checkpoint_dir
            )
        except Exception as exc:  # the old job keeps running
            self._failed(f"stop with savepoint: {exc}")
            return
        savepoint = Path(urllib.parse.urlparse(location).path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.status() in ("FINISHED", "CANCELED", "FAILED"):
                    break
            except Exception:
                break  # a local job's MiniCluster shuts down with it: the job has ended
            time.sleep(0.2)
        print(f"runner: savepoint {savepoint}; submitting the new plan", flush=True)
        previous = self.current
        try:
            job.write_catalog(job.catalog(t_env, plan, self.settings), self.settings.catalog_path)
            self.start(t_env, plan, statement_set, savepoint)
        except Exception as exc:
            self._failed(f"the new plan did not start ({exc}); resubmitting the previous one")
            self.start(*previous, savepoint)
