"""`make up` / `make down`: run the whole platform on this machine, no Docker.

    python -m stack.up           start Kafka, topics, the Flink job, the producer, the gateway;
                                 print the URLs; Ctrl-C (or `make down`) stops all of it
    python -m stack.up down      stop a running `make up` from another terminal
    python -m stack.up status    what runs, with resident memory per component

Each component runs in its own process group with its log in .run/logs/<name>.log, so
stopping a group also stops what it started (the Flink JVM, its Python workers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from datetime import time as datetime_time
from pathlib import Path

from moex.paths import ROOT, RUN
from stack.kafka import port_open
from stack.topics import create_topics

PY = sys.executable
MSK = timezone(timedelta(hours=3))


@dataclass
class Ports:
    kafka: int = int(os.environ.get("KAFKA_PORT", 9092))
    kafka_controller: int = int(os.environ.get("KAFKA_CONTROLLER_PORT", 9093))
    flink: int = int(os.environ.get("FLINK_REST_PORT", 8081))
    gateway: int = int(os.environ.get("GATEWAY_PORT", 8000))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka}"


@dataclass
class Component:
    name: str
    command: list[str]
    ready: Callable[[], bool]
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    run_dir: Path = RUN  # logs/ and pids/ live here (tests of the cluster use a temp dir)

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.run_dir / "pids" / f"{self.name}.pid"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(
                f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.command)}\n".encode()
            )
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        self.pid_path.write_text(str(self.process.pid))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{tail(self.log_path)}"
                )
            try:
                if self.ready():
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"{self.name} not ready after {self.timeout_s:.0f}s:\n{tail(self.log_path)}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None:
            return
        stop_group(self.process.pid, timeout_s, self.process)
        self.pid_path.unlink(missing_ok=True)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_group(pid: int, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group, then SIGKILL what is left after timeout_s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None:
            process.poll()
        if not group_alive(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process is not None:
        process.wait()


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def flink_job_running(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/overview", timeout=2) as response:
        jobs = json.load(response)["jobs"]
    return any(
        j["state"] == "RUNNING" and j["tasks"]["running"] == j["tasks"]["total"] for j in jobs
    )


def kafka_ready_with_topics(bootstrap: str) -> bool:
    host, port = bootstrap.split(":")
    if not port_open(host, int(port)):
        return False
    created = create_topics(bootstrap, timeout_s=5)
    if created:
        print(f" created {len(created)} topics", end="", flush=True)
    return True


def last_trade_ts(bootstrap: str, topic: str = "moex.trades") -> int | None:
    """Event time (epoch ms) of the newest trade in the topic, or None when it is empty."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            return None
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        newest = None
        for partition, end in ends.items():
            if end == 0:
                continue
            consumer.seek(partition, end - 1)
            for record in consumer.poll(timeout_ms=3000, max_records=10).get(partition, []):
                ts = json.loads(record.value).get("ts")
                if isinstance(ts, int) and (newest is None or ts > newest):
                    newest = ts
        return newest
    finally:
        consumer.close()


def producer_start(bootstrap: str, producer_args: list[str]) -> list[str]:
    """Continue the simulated session where the last `make up` left it, so a restart neither
    rewinds event time (late trades would miss their windows) nor repeats trade numbers."""
    if "--start" in producer_args or "--seed" in producer_args:
        return []
    try:
        newest = last_trade_ts(bootstrap)
    except Exception:
        return []
    if newest is None:
        return []
    start = datetime.fromtimestamp(newest / 1000 + 1, tz=MSK)
    # Skip the night: a 10x session clock would otherwise show a closed market for an hour.
    if start.time() >= datetime_time(23, 50):
        start = (start + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    elif start.time() < datetime_time(10, 0):
        start = start.replace(hour=10, minute=0, second=0, microsecond=0)
    return ["--start", start.isoformat(timespec="milliseconds")]


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


def make_up_watermark_delay() -> str:
    """The job's watermark delay under `make up`: 300 ms unless MOEX_WATERMARK_DELAY_MS says.

    The runner's own default (1 s) suits any feed; the feed `make up` starts is the synthetic
    producer, which writes every partition in event-time order, so a short delay loses nothing
    and puts spike alerts on the dashboard within the 1-s target (p99 0.5-0.8 s measured, vs
    1.3-1.7 s with 1 s). A feed out of order by more than this (the ISS poller fetches one
    security after another) needs a longer delay, or its late trades are dropped."""
    return os.environ.get("MOEX_WATERMARK_DELAY_MS", "300")


def components(ports: Ports, producer_args: list[str]) -> list[Component]:
    env = {
        "KAFKA_BOOTSTRAP": ports.bootstrap,
        "MOEX_RUN_DIR": str(RUN),
        "MOEX_CATALOG": str(RUN / "catalog.json"),
        "PYTHONUNBUFFERED": "1",
    }
    return [
        Component(
            "kafka",
            [
                PY,
                "-m",
                "stack.kafka",
                "start",
                "--port",
                str(ports.kafka),
                "--controller-port",
                str(ports.kafka_controller),
                "--data-dir",
                str(RUN / "kafka"),
            ],
            lambda: (
                port_open("127.0.0.1", ports.kafka)
                and bool(create_topics(ports.bootstrap, timeout_s=5) is not None)
            ),
            90,
            env,
        ),
        Component(
            "flink",
            [
                PY,
                "-m",
                "runner",
                "run",
                "--bootstrap",
                ports.bootstrap,
                "--rest-port",
                str(ports.flink),
            ],
            lambda: flink_job_running(ports.flink),
            300,
            {**env, "MOEX_WATERMARK_DELAY_MS": make_up_watermark_delay()},
        ),
        Component(
            "producer",
            [PY, "-m", "producer", "synthetic", "--bootstrap", ports.bootstrap, *producer_args],
            TradesFlowing(ports.bootstrap),
            30,
            env,
        ),
        Component(
            "gateway",
            [
                PY,
                "-m",
                "gateway",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.gateway),
                "--bootstrap",
                ports.bootstrap,
                # Half the cores (1 on 2): Kafka and the Flink job share the machine.
                "--workers",
                os.environ.get("GATEWAY_WORKERS", "auto"),
            ],
            lambda: http_ok(f"http://127.0.0.1:{ports.gateway}/healthz"),
            60,
            env,
        ),
    ]


def up(ports: Ports, producer_args: list[str]) -> int:
    if (RUN / "up.pid").exists() and group_alive(int((RUN / "up.pid").read_text())):
        print("make up is already running (make down stops it)", file=sys.stderr)
        return 1
    for name, port in (
        ("Kafka", ports.kafka),
        ("Flink UI", ports.flink),
        ("gateway", ports.gateway),
    ):
        if port_open("127.0.0.1", port):
            print(
                f"port {port} ({name}) is taken: stop what uses it, or `make down`", file=sys.stderr
            )
            return 1
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / "up.pid").write_text(str(os.getpid()))
    started: list[Component] = []
    t0 = time.monotonic()

    def stages() -> None:
        # Kafka first; the job, the producer and the gateway need only Kafka, so they start
        # together (the job's planning and Python workers take the longest).
        kafka, *others = components(ports, producer_args)
        print(f"  {kafka.name:9s} starting ...", end="", flush=True)
        kafka.start()
        started.append(kafka)
        kafka.wait_ready()
        print(f" ready ({time.monotonic() - t0:.0f}s)", flush=True)
        for component in others:
            module = component.command[2]
            if not (ROOT / module / "__main__.py").exists():
                print(f"  {component.name:9s} skipped: {module} not in this checkout", flush=True)
                continue
            if component.name == "producer":
                component.command += producer_start(ports.bootstrap, producer_args)
            component.start()
            started.append(component)
        # The quick ones first, so the dashboard URL answers while the job is still planned.
        for component in sorted(started[1:], key=lambda c: c.name == "flink"):
            print(f"  {component.name:9s} starting ...", end="", flush=True)
            component.wait_ready()
            print(f" ready ({time.monotonic() - t0:.0f}s)", flush=True)
        print(
            f"""
MOEX streaming analytics is up ({time.monotonic() - t0:.0f}s):
  dashboard   http://127.0.0.1:{ports.gateway}/
  streams     http://127.0.0.1:{ports.gateway}/api/streams
  Flink UI    http://127.0.0.1:{ports.flink}/
  Kafka       {ports.bootstrap}
  logs        make logs   (files in {RUN / "logs"})
Ctrl-C or `make down` stops everything.""",
            flush=True,
        )

    return supervise(started, stages, RUN / "up.pid")


def supervise(started: list[Component], stages: Callable[[], None], up_pid: Path) -> int:
    """Run `stages` (which start components into `started`), then watch them until Ctrl-C or
    `make down`; stop everything started, in reverse order, when one dies or a stage fails.
    Shared by `make up` and `make up-cluster` (stack/cluster.py)."""

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
                    raise RuntimeError(
                        f"{component.name} exited ({component.process.returncode}); "
                        f"last log lines:\n{tail(component.log_path)}"
                    )
            time.sleep(1)
    except StopRequested:
        shutdown()
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f" FAILED\n{exc}", file=sys.stderr, flush=True)
        shutdown()
        return 1


class StopRequested(Exception):
    """Ctrl-C or `make down` (SIGTERM) asked the supervisor to stop."""


def down() -> int:
    up_pid = RUN / "up.pid"
    if up_pid.exists():
        pid = int(up_pid.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.3)
        except ProcessLookupError:
            pass
        up_pid.unlink(missing_ok=True)
    # Whatever a killed supervisor left behind.
    leftovers = 0
    for pid_file in sorted((RUN / "pids").glob("*.pid")) if (RUN / "pids").exists() else []:
        pid = int(pid_file.read_text())
        if group_alive(pid):
            leftovers += 1
            stop_group(pid, 20)
        pid_file.unlink(missing_ok=True)
    print("make down: stopped" + (f" ({leftovers} leftover group(s) killed)" if leftovers else ""))
    return 0


def rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kib = next(
                int(line.split()[1])
                for line in (entry / "status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        except (FileNotFoundError, ProcessLookupError, StopIteration, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = kib
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / 1024


def status() -> int:
    pids = sorted((RUN / "pids").glob("*.pid")) if (RUN / "pids").exists() else []
    if not pids:
        print("nothing running (make up starts it)")
        return 1
    total = 0.0
    for pid_file in pids:
        pid = int(pid_file.read_text())
        alive = group_alive(pid)
        rss = rss_mb(pid) if alive else 0.0
        total += rss
        print(
            f"{pid_file.stem:13s} pid {pid:<8d} {'running' if alive else 'stopped':8s} {rss:8.0f} MiB"
        )
    print(f"{'total':13s} {'':22s} {total:8.0f} MiB resident")
    print(job_status_line(RUN / "runner.json"))
    if (RUN / "pids" / "jobmanager.pid").exists():
        from stack.cluster import BUDGET_MIB  # make up-cluster runs: its budget applies

        verdict = "within" if total < BUDGET_MIB else "OVER"
        print(f"{'':36s} {verdict} the cluster's budget of {BUDGET_MIB} MiB")
    return 0


def job_status_line(pid_file: Path) -> str:
    """`job  RUNNING, 0 restarts` (+ the last exception in one line): a job restarting in a
    loop shows here, not only in the Flink log."""
    from runner.flink_rest import runner_job_health

    health = runner_job_health(pid_file)
    line = f"{'job':13s} {health['state']}, {health['restarts']} restarts"
    if health["last_exception"]:
        line += f"; last exception: {health['last_exception']}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.up")
    parser.add_argument("command", nargs="?", default="up", choices=["up", "down", "status"])
    parser.add_argument(
        "--producer-args",
        # A simulated session at 10x: a 1-minute candle every 6 s, MACD warm in ~4 min.
        default=os.environ.get("PRODUCER_ARGS", "--accelerate 10 --anomaly-rate 0.05"),
        help="options for `python -m producer synthetic` (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.command == "down":
        return down()
    if args.command == "status":
        return status()
    return up(Ports(), args.producer_args.split())


if __name__ == "__main__":
    sys.exit(main())
