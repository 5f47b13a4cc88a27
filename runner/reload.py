"""Hot reload of sql/: plan and check the new job, then swap it in from a savepoint.

    python -m runner reload [--pid-file .run/runner.json]

The job is hosted by the `python -m runner run` process, which records itself in the pid file
(pid, job id, REST port, sql dir). `reload` sends it SIGHUP and prints what it reports; the
runner, whose JVM is warm, does the work, every check before the old job is touched:
  1. plans the new sql/ once (headers, Flink's parser and planner): errors as file:line:col;
  2. asks the broker whether every sink topic exists or can be created (validate only):
     `sql/.../x.sql:LINE:1: topic ... cannot be created: <broker's reason>`;
  3. reports which outputs restore from the savepoint and which start fresh (rule below), and
     which were dropped (their topics are kept, with their data; nothing is deleted);
  4. creates the new topics, stops the old job with a savepoint (POST /jobs/<id>/stop, no
     drain) and submits the already planned job restored from it (unclaimed state ignored);
     if it cannot start, the old plan is resubmitted from the same savepoint;
  5. waits for the new job's first completed checkpoint, when exactly-once outputs flow again,
     and prints the gap the old outputs saw and where the time went; a new job that restarts
     or fails first is cancelled and the old one resubmitted from the savepoint (exit 1); one
     that runs but is slow to checkpoint (a loaded machine) is left running.
Any failure in 1-3 exits 2 with the old job still running, untouched.

Which outputs restore: Flink SQL gives operators no uids, so an operator's id is a hash of its
place in the job graph, and savepoint state goes back to the operator with the same id. The
runner compares, output by output, the operator ids of the output's sink and everything
upstream in the new job graph with those of the running job: all known -> "restores" (windows,
OVER history, de-duplication state carry on); any new id -> "starts fresh": those operators
start empty (windows refill, indicators warm up again, up to 33 candles for MACD) and a source
whose id changed resumes from the consumer group's committed offsets. An edit that keeps the
graph (a threshold, a comment) restores everything; a new output usually leaves the others'
ids alone. Exactly-once sinks keep their transactional-id prefixes, so a reload never
duplicates committed rows.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.parse
from pathlib import Path

from runner import job
from runner.flink_rest import job_health, job_state, rest
from runner.settings import Settings

__all__ = ["job_state", "reload", "LiveJob"]

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


def stop_with_savepoint(port: int, job_id: str, target: Path, timeout_s: float = 120.0) -> str:
    """Stop the job with a savepoint (no drain: windows are not flushed); return its path."""
    target.mkdir(parents=True, exist_ok=True)
    trigger = rest(
        port, f"/jobs/{job_id}/stop", {"targetDirectory": target.resolve().as_uri(), "drain": False}
    )
    request_id = trigger["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = rest(port, f"/jobs/{job_id}/savepoints/{request_id}")
        if status.get("status", {}).get("id") == "COMPLETED":
            operation = status.get("operation", {})
            if "location" in operation:
                return str(operation["location"])
            raise RuntimeError(f"savepoint failed: {operation.get('failure-cause')}")
        time.sleep(0.1)
    raise TimeoutError(f"no savepoint of job {job_id} within {timeout_s:.0f} s")


def first_checkpoint(port: int, job_id: str, timeout_s: float = 180.0) -> float | str:
    """Wait for the job's first completed checkpoint: its time (epoch s), or "failing" when the
    job restarts or fails first, or "slow" when the deadline passes while it runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            counts = rest(port, f"/jobs/{job_id}/checkpoints").get("counts", {})
            if counts.get("completed", 0) > 0:
                return time.time()
            if job_state(port, job_id) in ("RESTARTING", "FAILING", "FAILED", "CANCELED"):
                return "failing"
        except OSError:
            pass
        time.sleep(0.2)
    return "slow"


# --- the client: `python -m runner reload` --------------------------------------------------


def reload(settings: Settings, timeout_s: float = 600.0) -> int:
    """Ask the runner to reload; print its report as it comes; 0 when the new job runs."""
    state = read_state(settings.pid_file)
    if state is None:
        print(
            f"runner: no running job recorded in {settings.pid_file}: start one with "
            "`python -m runner run`",
            file=sys.stderr,
        )
        return 1
    asked = time.time()
    os.kill(int(state["pid"]), signal.SIGHUP)
    print(f"runner: asked runner {state['pid']} to reload job {state['job_id']}", flush=True)
    printed = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read_state(settings.pid_file)
        if now is None:
            print("runner: the runner exited during the reload", file=sys.stderr)
            return 1
        record = now.get("reload") or {}
        if record.get("started", 0) < asked:
            continue
        lines = record.get("lines", [])
        for stream, line in lines[printed:]:
            print(line, file=sys.stderr if stream == "err" else sys.stdout, flush=True)
        printed = len(lines)
        if record.get("done"):
            return int(record.get("code", 1))
    print(f"runner: the reload did not finish within {timeout_s:.0f} s", file=sys.stderr)
    return 1


# --- the server: the `python -m runner run` process -----------------------------------------


class LiveJob:
    """The job this process hosts: start, stop, and restart from a savepoint on SIGHUP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.job_client = None
        self.current: tuple | None = None  # (t_env, plan, pipeline) of the running job
        self.operators: dict[str, list[str]] = {}  # output -> its operator ids (restore report)
        self.record: dict | None = None  # the reload in progress, mirrored in the pid file

    @property
    def job_id(self) -> str:
        return str(self.job_client.get_job_id()) if self.job_client else "?"

    def _write(self, **extra: object) -> None:
        write_state(self.settings, self.job_id, reload=self.record, **extra)

    def say(self, line: str, err: bool = False) -> None:
        print(line, file=sys.stderr if err else sys.stdout, flush=True)
        if self.record is not None:
            self.record["lines"].append(("err" if err else "out", line))
            self._write(restored_from=self.record.get("restored_from"))

    def start(self, t_env, plan, compiled, restore: Path | None) -> None:
        for key, value in job.streaming_config(self.settings, restore).items():
            t_env.get_config().set(key, value)
        self.job_client = compiled.submit()
        self.current = (t_env, plan, compiled)
        self._write(restored_from=str(restore) if restore else None)
        print(
            f"runner: job {self.job_id} running {len(plan.outputs)} outputs "
            f"({', '.join(o.name for o in plan.outputs)}); "
            + (f"restored from {restore}" if restore else "fresh state")
            + f"; web UI http://127.0.0.1:{self.settings.rest_port}",
            flush=True,
        )

    def remember_operators(self) -> None:
        """The running job's operator ids per output, to tell a reload what restores."""
        _, plan, compiled = self.current
        self.operators = compiled.output_operators(sink_names(plan))

    def status(self) -> str:
        return str(self.job_client.get_job_status().result())

    def cancel(self) -> None:
        try:
            self.job_client.cancel().result(30)
        except Exception:
            pass

    def _finish(self, code: int) -> None:
        self.record["done"] = True
        self.record["code"] = code
        self._write(restored_from=self.record.get("restored_from"))
        self.record = None

    def reload(self) -> None:
        from runner.cli import topic_errors, validate
        from runner.pipeline import restore_report

        self.record = {"started": time.time(), "lines": [], "done": False}
        marks = {"asked": time.monotonic()}
        old_job = self.job_id
        self.say("runner: reload: planning sql/ (the job keeps running)")
        try:
            t_env, plan, compiled = validate(self.settings)
            marks["planned"] = time.monotonic()
            # The job graph is compared under the config the job will run with.
            for key, value in job.streaming_config(self.settings, None).items():
                t_env.get_config().set(key, value)
            errors = topic_errors(plan, self.settings, create=False)
            if not errors:
                operators = compiled.output_operators(sink_names(plan))
        except job.PlanError as exc:
            errors = exc.errors
        except Exception as exc:  # a planner crash must not take the running job down
            errors = [f"runner: planning failed: {exc}"]
        if errors:
            for err in errors:
                self.say(str(err), err=True)
            self.say(
                f"runner: {len(errors)} problem(s); job {old_job} keeps running unchanged",
                err=True,
            )
            return self._finish(2)
        report = restore_report(self.operators, operators)
        self.say(f"runner: restores from the savepoint: {', '.join(report.restored) or '-'}")
        self.say(
            f"runner: starts fresh (new or changed operators): {', '.join(report.fresh) or '-'}"
        )
        for name in report.dropped:
            self.say(
                f"runner: dropped {name}: the job stops writing it; topic "
                f"{self.settings.topic_prefix}{name} is kept with its data (not deleted)"
            )
        if report.incompatible:
            for name, shapes in report.incompatible.items():
                self.say(
                    f"runner: {name} cannot restore: an operator keeps its id but holds state of "
                    f"another layout, which Flink refuses ({shapes[0][:200]})",
                    err=True,
                )
            self.say(
                f"runner: job {old_job} keeps running unchanged; to start the new sql/ without "
                "its state: stop the runner and `python -m runner run --fresh` (sources resume "
                "from the consumer group's committed offsets)",
                err=True,
            )
            return self._finish(2)
        errors = topic_errors(plan, self.settings, create=True, say=self.say)
        if errors:
            for err in errors:
                self.say(str(err), err=True)
            return self._finish(2)
        marks["topics"] = time.monotonic()
        try:
            location = stop_with_savepoint(
                self.settings.rest_port, self.job_id, self.settings.checkpoint_dir
            )
        except Exception as exc:  # the old job keeps running
            self.say(f"runner: reload failed: stop with savepoint: {exc}", err=True)
            return self._finish(1)
        stopped_at = time.time()
        marks["savepoint"] = time.monotonic()
        savepoint = Path(urllib.parse.urlparse(location).path)
        self._wait_ended()
        self.say(f"runner: savepoint {savepoint}; submitting the new job")
        previous, old_operators = self.current, self.operators
        self.record["restored_from"] = str(savepoint)
        try:
            job.write_catalog(job.catalog(t_env, plan, self.settings), self.settings.catalog_path)
            self.start(t_env, plan, compiled, savepoint)
            self.operators = operators
        except Exception as exc:
            self.say(f"runner: the new job did not start ({exc}); resubmitting the old one", True)
            self.start(*previous, savepoint)
            return self._finish(1)
        marks["submitted"] = time.monotonic()
        flowing = first_checkpoint(self.settings.rest_port, self.job_id)
        marks["checkpoint"] = time.monotonic()
        if flowing == "failing":
            # The new job does not run (a restore it cannot do, a sink that cannot write): put
            # the old one back from the same savepoint rather than leave every output stopped.
            try:
                health = job_health(self.settings.rest_port, self.job_id)
            except OSError as exc:
                health = {"state": "UNKNOWN", "restarts": "?", "last_exception": str(exc)}
            self.say(
                f"runner: the new job fails ({health['state']}, {health['restarts']} restarts: "
                f"{health['last_exception']}); resubmitting the old job from the savepoint",
                err=True,
            )
            self.cancel()
            self.start(*previous, savepoint)
            self.operators = old_operators
            return self._finish(1)
        if flowing == "slow":  # running, only slow to start (a loaded machine): leave it be
            self.say(
                f"runner: job {self.job_id} is running but has made no checkpoint in 180 s; "
                "`make status` shows its state, restarts and last exception"
            )
            return self._finish(0)
        self.say(
            f"runner: job {self.job_id} running, restored from {savepoint}; old outputs paused "
            f"{flowing - stopped_at:.1f} s (savepoint to the new job's first checkpoint)"
        )
        steps = ("planned", "topics", "savepoint", "submitted", "checkpoint")
        previous_mark, parts = marks["asked"], []
        for step in steps:
            parts.append(f"{step} +{marks[step] - previous_mark:.1f} s")
            previous_mark = marks[step]
        self.say(f"runner: reload took {previous_mark - marks['asked']:.1f} s: {', '.join(parts)}")
        return self._finish(0)

    def _wait_ended(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.status() in ("FINISHED", "CANCELED", "FAILED"):
                    return
            except Exception:
                return  # a local job's MiniCluster shuts down with it: the job has ended
            time.sleep(0.1)


def sink_names(plan: job.Plan) -> list[str]:
    return [name for o in plan.outputs for name in (o.name, o.live_name) if name]
