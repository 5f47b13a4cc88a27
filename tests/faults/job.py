"""`python -m runner run` under a fault test: a restartable process group with its own REST
port, checkpoints and logs, and the logs kept for a person when a test fails.

Everything runs in its own process group, so a SIGKILL takes the runner's JVM and its Python
workers down with it, as a power cut or an OOM kill would."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from moex.paths import ROOT
from runner.flink_rest import rest, running_job
from stack.kafka import free_port
from tests.processes import Group, wait_for


@dataclass
class RunnerJob:
    """`python -m runner run` as users run it, in its own process group, restartable.

    Every start gets a new REST port (the previous one may linger in TIME_WAIT); the checkpoint
    dir, consumer group and transactional-id prefix stay, so a start after a crash restores the
    newest retained checkpoint, as `make up` after a power cut would.
    """

    bootstrap: str
    prefix: str
    work: Path
    only: Sequence[str] = ()
    checkpoint_ms: int = 1000
    heap_mb: int = 768
    extra_env: dict[str, str] = field(default_factory=dict)
    starts: list[Group] = field(default_factory=list)
    rest_port: int = 0
    job_id: str | None = None

    @property
    def run_id(self) -> str:
        return self.prefix.rstrip(".")

    @property
    def checkpoint_dir(self) -> Path:
        return self.work / "checkpoints"

    @property
    def current(self) -> Group:
        return self.starts[-1]

    def start(self) -> RunnerJob:
        self.rest_port = free_port()
        self.job_id = None
        tmp = self.work / "jvm-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "runner", "run",
            "--bootstrap", self.bootstrap,
            "--topic-prefix", self.prefix,
            "--txn-prefix", self.run_id,
            "--group-id", self.run_id,
            "--checkpoint-dir", str(self.checkpoint_dir),
            "--checkpoint-ms", str(self.checkpoint_ms),
            "--rest-port", str(self.rest_port),
            "--catalog", str(self.work / "catalog.json"),
            "--pid-file", str(self.work / "runner.json"),
        ]  # fmt: skip
        if self.only:
            command += ["--only", ",".join(self.only)]
        env = {
            "PYTHONPATH": str(ROOT),
            "JVM_ARGS": f"-Xmx{self.heap_mb}m -Xms128m -XX:MaxMetaspaceSize=384m "
            f"-XX:+UseG1GC -Djava.io.tmpdir={tmp}",
            "FLINK_LOG_DIR": str(self.work / f"flink-logs-{len(self.starts) + 1}"),
            **self.extra_env,
        }
        log = self.work / f"runner-{len(self.starts) + 1}.log"
        self.starts.append(Group(command, log, env).start())
        return self

    def wait_running(self, timeout_s: float = 180.0) -> str:
        """The job id once the job and all its tasks run."""

        def running() -> str | None:
            if not self.current.running():
                raise AssertionError(f"the runner exited:\n{self.current.log()}")
            job = running_job(self.rest_port)
            return job["jid"] if job else None

        self.job_id = wait_for(running, timeout_s, "the Flink job to run", every_s=0.5)
        return self.job_id

    def checkpoints(self) -> dict:
        assert self.job_id is not None
        return rest(self.rest_port, f"/jobs/{self.job_id}/checkpoints")

    def completed_checkpoints(self) -> int:
        return int(self.checkpoints().get("counts", {}).get("completed", 0))

    def latest_checkpoint_id(self) -> int:
        latest = (self.checkpoints().get("latest") or {}).get("completed") or {}
        return int(latest.get("id", -1))

    def restored_from(self) -> dict | None:
        return (self.checkpoints().get("latest") or {}).get("restored")

    def wait_checkpoint_after(self, checkpoint_id: int, timeout_s: float = 120.0) -> int:
        """Until a checkpoint newer than `checkpoint_id` has completed; return its id."""

        def newer() -> int | None:
            if not self.current.running():
                raise AssertionError(f"the runner exited:\n{self.current.log()}")
            latest = self.latest_checkpoint_id()
            return latest if latest > checkpoint_id else None

        return wait_for(newer, timeout_s, f"a checkpoint after #{checkpoint_id}", every_s=0.2)

    def state(self) -> str:
        assert self.job_id is not None
        return str(rest(self.rest_port, f"/jobs/{self.job_id}").get("state"))

    def failovers(self) -> list[dict]:
        """The job's exception history: every failure (and restart) since it started."""
        assert self.job_id is not None
        history = rest(self.rest_port, f"/jobs/{self.job_id}/exceptions").get(
            "exceptionHistory", {}
        )
        return list(history.get("entries", []))

    def crash(self) -> None:
        """SIGKILL the runner's whole process group: the JVM and Python workers die at once."""
        self.current.kill()

    def stop(self) -> None:
        """Stop whatever still runs, then drop the bulky leftovers (checkpoints, JVM temp
        files: ~20 MB a start); logs stay for artifacts_on_failure."""
        for group in self.starts:
            group.stop()
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        shutil.rmtree(self.work / "jvm-tmp", ignore_errors=True)

    def idle_marks(self) -> list[str]:
        """Flink's "Marking split idle / not idle" lines: a split that comes back from idle
        after another has moved the watermark on may have had its records dropped as late."""
        marks = []
        for log in sorted(self.work.glob("flink-logs-*/*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if "Marking split" in line:
                    marks.append(line[11:23] + " " + line.split("] - ", 1)[-1])
        return marks

    def diagnosis(self) -> str:
        """What to read when a result is missing: the idle marks, the runner's own output."""
        marks = self.idle_marks()
        returns = [m for m in marks if "not idle" in m]
        text = (
            f"{len(marks)} idle/active switches of source splits ({len(returns)} returns from "
            "idle: records of a split returning after another moved the watermark on are late "
            "and dropped; see test_faults_idle.py)"
        )
        return text + ("\n  " + "\n  ".join(marks[:12]) if marks else "")

    def logs(self) -> str:
        return "\n".join(f"--- {g.log_file.name} ---\n{g.log(3000)}" for g in self.starts)


def keep_artifacts(work: Path, name: str) -> Path:
    """Copy runner logs (and Flink's) to .run/test-output/faults/<name> for a person to read."""
    target = Path(os.environ.get("MOEX_TEST_OUTPUT", ROOT / ".run" / "test-output"))
    target = target / "faults" / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for path in list(work.rglob("*.log")) + list(work.rglob("flink-logs-*/*")):
        if path.is_file():
            shutil.copy2(path, target / f"{path.parent.name}-{path.name}")
    return target


class artifacts_on_failure:
    """On an exception, copy the logs under `work` to .run/test-output/faults/<name>."""

    def __init__(self, work: Path, name: str) -> None:
        self.work, self.name = work, name

    def __enter__(self) -> artifacts_on_failure:
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is not None:
            target = keep_artifacts(self.work, self.name)
            print(f"\nlogs kept in {target}", file=sys.stderr)
