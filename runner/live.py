"""The job a `python -m runner run` process hosts: start it, watch it, stop it, and swap in a
new plan from a savepoint when `python -m runner reload` asks (SIGHUP). The protocol and the
rule of which outputs restore are described in runner/reload.py.
"""

from __future__ import annotations

import gc
import signal
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.catalog import catalog, write_catalog
from runner.flink_env import streaming_config
from runner.flink_rest import job_health, rest
from runner.pidfile import write_state
from runner.pipeline import Pipeline, restore_report
from runner.plan import Plan, PlanError, load_plan, sink_names
from runner.settings import Settings
from runner.validation import topic_errors, validate

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


def first_checkpoint(
    port: int, job_id: str, timeout_s: float = 180.0, marks: dict[str, float] | None = None
) -> float | str:
    """Wait for the job's first completed checkpoint: its time (epoch s), or "failing" when the
    job restarts or fails first, or "slow" when the deadline passes while it runs.

    Exactly-once rows reach their topics only when a checkpoint completes, and the periodic
    scheduler's first one falls anywhere up to an interval after the job runs; so as soon as
    every task runs, one is asked for (POST /jobs/<id>/checkpoints), as replay does at its end.
    That moment goes to marks["running"] (monotonic s).
    """
    deadline = time.monotonic() + timeout_s
    triggered = False
    while time.monotonic() < deadline:
        try:
            counts = rest(port, f"/jobs/{job_id}/checkpoints").get("counts", {})
            if counts.get("completed", 0) > 0:
                return time.time()
            job = rest(port, f"/jobs/{job_id}")
            if job.get("state") in ("RESTARTING", "FAILING", "FAILED", "CANCELED"):
                return "failing"
            vertices = job.get("vertices", [])
            if not triggered and vertices and all(v.get("status") == "RUNNING" for v in vertices):
                if marks is not None:
                    marks["running"] = time.monotonic()
                rest(port, f"/jobs/{job_id}/checkpoints", body={})
                triggered = True
        except OSError:
            pass
        time.sleep(0.2)
    return "slow"


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

    def start(self, t_env, plan: Plan, compiled: Pipeline, restore: Path | None) -> None:
        for key, value in streaming_config(self.settings, restore).items():
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
        # While the new sql/ is planned, only this thread may talk to the JVM (docs/flink-job.md,
        # PyFlink facts). Python's cycle collector runs in whichever thread allocates, here also
        # the threads of the running job's Python UDFs (loopback mode), and finalising the py4j
        # objects of an earlier planning sends the JVM a message from that thread, which can
        # leave the planner on a connection without the connector jars: a fresh-clone CI run saw
        # a reload after two refused ones fail with "Unable to create a source ... 'kafka'". So
        # that garbage is collected here first, and the collector waits until the reload ends.
        gc.collect()
        gc.disable()
        try:
            self._reload()
        finally:
            gc.enable()

    def _reload(self) -> None:
        self.record = {"started": time.time(), "lines": [], "done": False}
        marks = {"asked": time.monotonic()}
        old_job = self.job_id
        self.say("runner: reload: planning sql/ (the job keeps running)")
        topics = None
        try:
            # The sink topics (from the headers) are checked and created while Flink plans.
            background = ThreadPoolExecutor(1, thread_name_prefix="reload-topics")
            topics = background.submit(self._prepare_topics, load_plan(self.settings))
            background.shutdown(wait=False)  # its one task still runs; the thread then ends
            t_env, plan, compiled = validate(self.settings)
            marks["planned"] = time.monotonic()
            # The job graph is compared under the config the job will run with.
            for key, value in streaming_config(self.settings, None).items():
                t_env.get_config().set(key, value)
            errors, created = topics.result()
            for line in created:
                self.say(line)
            marks["topics"] = time.monotonic()
            if not errors:
                operators = compiled.output_operators(sink_names(plan))
        except PlanError as exc:
            errors = exc.errors
            if topics is not None:  # a file's SQL and its topic: both reported
                topic_errs, created = topics.result()
                errors += topic_errs
                for line in created:
                    self.say(f"{line} (kept for the corrected file)")
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
            write_catalog(catalog(t_env, plan, self.settings), self.settings.catalog_path)
            self.start(t_env, plan, compiled, savepoint)
            self.operators = operators
        except Exception as exc:
            self.say(f"runner: the new job did not start ({exc}); resubmitting the old one", True)
            self.start(*previous, savepoint)
            return self._finish(1)
        marks["submitted"] = time.monotonic()
        flowing = first_checkpoint(self.settings.rest_port, self.job_id, marks=marks)
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
        steps = ("planned", "topics", "savepoint", "submitted", "running", "checkpoint")
        steps = tuple(step for step in steps if step in marks)  # "running": seen, or not
        previous_mark, parts = marks["asked"], []
        for step in steps:
            parts.append(f"{step} +{marks[step] - previous_mark:.1f} s")
            previous_mark = marks[step]
        self.say(f"runner: reload took {previous_mark - marks['asked']:.1f} s: {', '.join(parts)}")
        return self._finish(0)

    def _prepare_topics(self, plan: Plan) -> tuple[list, list[str]]:
        """Ask the broker whether every sink topic can be created, then create the missing
        ones (before the plan is known to be good: a topic of a file whose SQL then fails is
        kept, and said so, for the corrected file's next reload). (errors, lines to print)

        Runs in a thread beside the planner, so it must not touch the JVM (not even through
        self.say, which reads the job id): py4j hands a thread whichever connection is free,
        and the planner's thread could then get one whose context class loader lacks the
        connector jars ("Unable to create a source ... 'connector'='kafka'", seen once)."""
        created: list[str] = []
        errors = topic_errors(plan, self.settings, create=False)
        if not errors:
            errors = topic_errors(plan, self.settings, create=True, say=created.append)
        return errors, created

    def _wait_ended(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.status() in ("FINISHED", "CANCELED", "FAILED"):
                    return
            except Exception:
                return  # a local job's MiniCluster shuts down with it: the job has ended
            time.sleep(0.1)


def serve(settings: Settings, t_env, plan: Plan, compiled: Pipeline, restore: Path | None) -> int:
    """Run the job in this process until SIGTERM/SIGINT; reload it on SIGHUP. The exit code."""
    requests: list[str] = []  # handlers only queue; the loop below acts between polls
    signal.signal(signal.SIGTERM, lambda *_: requests.append("stop"))
    signal.signal(signal.SIGINT, lambda *_: requests.append("stop"))
    signal.signal(signal.SIGHUP, lambda *_: requests.append("reload"))
    live = LiveJob(settings)
    live.start(t_env, plan, compiled, restore)
    live.remember_operators()
    while True:
        while requests:
            request = requests.pop(0)
            if request == "stop":
                print("runner: stopping the job", flush=True)
                live.cancel()
                settings.pid_file.unlink(missing_ok=True)
                return 0
            live.reload()
        status = live.status()
        if status in ("FAILED", "CANCELED", "FINISHED"):
            print(f"runner: job ended with status {status}", file=sys.stderr)
            settings.pid_file.unlink(missing_ok=True)
            return 1 if status == "FAILED" else 0
        time.sleep(0.5)
