"""What every benchmark runs in: progress lines, temp folders, child processes (the process
toolkit of stack/proc.py), a broker with its topics, and consumer lag."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from moex.paths import ROOT
from producer.reference import INSTRUMENTS
from stack import proc
from stack.kafka import KafkaBroker, free_port
from stack.topics import create_plain_topics, create_topics

T = TypeVar("T")

PY = sys.executable
# The ten most active instruments of the producer's reference data.
TICKERS = list(INSTRUMENTS)[:10]
STARTED = time.monotonic()

logging.getLogger("kafka").setLevel(logging.CRITICAL)


def say(message: str) -> None:
    """Progress on stderr, with the time since the run started (stdout keeps the table)."""
    print(f"[{time.monotonic() - STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


@contextmanager
def workspace(name: str, keep: bool = False) -> Iterator[Path]:
    """A temp folder for one benchmark (broker data, logs, checkpoints), deleted afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"moex-bench-{name}-"))
    try:
        yield path
    finally:
        if keep:
            say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def child_env(work: Path, **extra: str) -> dict[str, str]:
    """Environment of the project's components: their .run/ files go to the temp folder."""
    env = {
        **os.environ,
        "MOEX_RUN_DIR": str(work / "run"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(
            dict.fromkeys([str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))])
        ),
    }
    env.update(extra)
    return env


class Proc(proc.ProcessGroup):
    """A child in its own process group, started at once and stopped by stop_all() on Ctrl-C."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        super().__init__(command, log_path, env, name=name)
        self.start()
        RUNNING.add(self)

    @property
    def log_path(self) -> Path:
        return self.log_file

    @property
    def popen(self) -> subprocess.Popen:
        assert self.process is not None
        return self.process

    def alive(self) -> bool:
        return self.running()

    def wait(self, timeout_s: float) -> int | None:  # type: ignore[override]
        """The exit code, or None if still running after timeout_s."""
        try:
            return super().wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 20.0) -> None:
        super().stop(timeout_s)
        RUNNING.discard(self)


RUNNING: set[Proc] = set()


def stop_all() -> None:
    """Stop every child still running (on Ctrl-C or a failed benchmark)."""
    for child in list(RUNNING):
        child.stop(timeout_s=10)


def wait_for(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    child: Proc | None = None,
    every: float = 0.3,
) -> T:
    """Poll `condition()` until truthy; fail with the child's log tail if it died meanwhile."""
    return proc.wait_for(condition, timeout_s, what, every, retry_on=(Exception,), group=child)


@contextmanager
def kafka_broker(work: Path, heap_mb: int = 512) -> Iterator[KafkaBroker]:
    """A fresh single-node Kafka 4 on free ports with every topic of topics.toml."""
    broker = KafkaBroker(work / "kafka", free_port(), free_port(), heap_mb=heap_mb)
    broker.start()
    try:
        create_topics(broker.bootstrap)
        yield broker
    finally:
        broker.stop()


def create_extra_topics(bootstrap: str, names: Iterable[str], partitions: int = 3) -> None:
    create_plain_topics(bootstrap, dict.fromkeys(names, partitions), client_id="moex-bench")


class LagProbe:
    """Consumer lag of a group on a topic: end offsets minus the group's committed offsets.

    Flink commits its source offsets when a checkpoint completes, so the lag seen here moves in
    steps of one checkpoint interval's input."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import KafkaAdminClient

        self.group = group
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="moex-bench-lag")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        partitions = self.consumer.partitions_for_topic(topic) or set()
        self.tps = [TopicPartition(topic, p) for p in sorted(partitions)]

    def sample(self) -> tuple[int, int]:
        """(lag, end offsets summed)."""
        ends = self.consumer.end_offsets(self.tps)
        committed = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
        end_total = sum(ends.values())
        done = sum(max(committed[tp].offset, 0) for tp in self.tps if tp in committed)
        return end_total - done, end_total

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()
