"""What `make up` (stack/up.py) and `make up-cluster` (stack/cluster.py) both run: a Component
(a named process group with a readiness check, a log and a pid file under .run/), the
supervisor that starts components and stops them all, and the components both layouts share
(the producer and the gateway)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moex.paths import RUN
from stack import proc

PY = sys.executable


@dataclass
class Component:
    """One process group of the stack; `env` is added to this process's environment."""

    name: str
    command: list[str]
    ready: Callable[[], bool]
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    run_dir: Path = RUN  # logs/ and pids/ live here (tests of the cluster use a temp dir)
    group: proc.ProcessGroup | None = None

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.run_dir / "pids" / f"{self.name}.pid"

    @property
    def process(self) -> subprocess.Popen | None:
        return None if self.group is None else self.group.process

    def start(self) -> None:
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        self.group = proc.ProcessGroup(self.command, self.log_path, env, name=self.name)
        self.group.start(header=True)
        self.pid_path.write_text(str(self.group.pid))

    def wait_ready(self) -> None:
        """Until `ready()` holds; RuntimeError if the process exits, TimeoutError after
        timeout_s (both with the tail of its log)."""
        assert self.group is not None, "start() first"
        try:
            proc.wait_for(
                self.ready, self.timeout_s, f"{self.name} to be ready", 0.5,
                retry_on=(Exception,), group=self.group,
            )  # fmt: skip
        except proc.WaitTimeout:
            raise TimeoutError(
                f"{self.name} not ready after {self.timeout_s:.0f}s:\n{self.group.tail()}"
            ) from None

    def alive(self) -> bool:
        return self.group is not None and self.group.running()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.group is None:
            return
        self.group.stop(timeout_s)
        self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the whole group, as a power cut would."""
        if self.group is not None:
            self.group.kill()

    def rss_mib(self) -> float:
        return self.group.rss_mib() if self.group is not None else 0.0


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


class TradesFlowing:
    """Ready check of the producer: new trades arrive in moex.trades."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.baseline: int | None = None

    def _total(self) -> int:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            parts = consumer.partitions_for_topic("moex.trades") or set()
            ends = consumer.end_offsets([TopicPartition("moex.trades", p) for p in parts])
            return sum(ends.values())
        finally:
            consumer.close()

    def __call__(self) -> bool:
        total = self._total()
        if self.baseline is None:
            self.baseline = total
            return False
        return total > self.baseline


def app_env(bootstrap: str, run_dir: Path) -> dict[str, str]:
    """The environment of the job, the producer and the gateway: one broker, one run folder."""
    return {
        "KAFKA_BOOTSTRAP": bootstrap,
        "MOEX_RUN_DIR": str(run_dir),
        "MOEX_CATALOG": str(run_dir / "catalog.json"),
        "PYTHONUNBUFFERED": "1",
    }


def producer_component(
    bootstrap: str, producer_args: list[str], run_dir: Path, timeout_s: float
) -> Component:
    """`python -m producer synthetic`, ready once its trades arrive."""
    return Component(
        "producer",
        [PY, "-m", "producer", "synthetic", "--bootstrap", bootstrap, *producer_args],
        TradesFlowing(bootstrap),
        timeout_s,
        app_env(bootstrap, run_dir),
        run_dir=run_dir,
    )


def gateway_component(
    port: int, bootstrap: str, run_dir: Path, extra_args: list[str] | None = None
) -> Component:
    """`python -m gateway` on 127.0.0.1:port, ready once /healthz answers."""
    return Component(
        "gateway",
        [PY, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port),
         "--bootstrap", bootstrap, *(extra_args or [])],
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        60,
        app_env(bootstrap, run_dir),
        run_dir=run_dir,
    )  # fmt: skip


class StopRequested(Exception):
    """Ctrl-C or `make down` (SIGTERM) asked the supervisor to stop."""


def supervise(
    started: list[Component],
    stages: Callable[[], None],
    up_pid: Path,
    tick: Callable[[], None] | None = None,
) -> int:
    """Run `stages` (which start components into `started`), then watch them until Ctrl-C or
    `make down`; stop everything started, in reverse order, when one dies or a stage fails.
    `tick` runs once a second while everything is up (`make up WATCH=1`'s file watcher).
    Shared by `make up` and `make up-cluster`."""

    def shutdown() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping: " + ", ".join(c.name for c in reversed(started)), flush=True)
        # Producer first (it flushes), Kafka last (the job commits its last transaction).
        for component in reversed(started):
            component.stop()
        up_pid.unlink(missing_ok=True)
        print("stopped", flush=True)

    def request_stop(signum: int, _frame: object) -> None:
        raise StopRequested(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stages()
        while True:
            for component in started:
                if not component.alive():
                    assert component.group is not None
                    raise RuntimeError(
                        f"{component.name} exited ({component.group.returncode}); "
                        f"last log lines:\n{component.group.tail()}"
                    )
            if tick is not None:
                tick()
            time.sleep(1)
    except StopRequested:
        shutdown()
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f" FAILED\n{exc}", file=sys.stderr, flush=True)
        shutdown()
        return 1
