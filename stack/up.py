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
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from datetime import time as datetime_time
from pathlib import Path

from moex.paths import ROOT, RUN, SQL_DIR
from runner.flink_rest import running_job
from stack.components import (
    PY,
    Component,
    app_env,
    gateway_component,
    producer_component,
    supervise,
)
from stack.kafka import port_open
from stack.proc import group_alive, stop_group, tree_rss_mib
from stack.topics import create_topics
from stack.watch import SourceWatcher, run_reload

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


def make_up_watermark_delay() -> str:
    """The job's watermark delay under `make up`: 300 ms unless MOEX_WATERMARK_DELAY_MS says.

    The runner's own default (1 s) suits any feed; the feed `make up` starts is the synthetic
    producer, which writes every partition in event-time order, so a short delay loses nothing
    and puts spike alerts on the dashboard within the 1-s target (p99 0.5-0.8 s measured, vs
    1.3-1.7 s with 1 s). A feed out of order by more than this (the ISS poller fetches one
    security after another) needs a longer delay, or its late trades are dropped."""
    return os.environ.get("MOEX_WATERMARK_DELAY_MS", "300")


def components(ports: Ports, producer_args: list[str]) -> list[Component]:
    env = app_env(ports.bootstrap, RUN)
    return [
        Component(
            "kafka",
            [PY, "-m", "stack.kafka", "start", "--port", str(ports.kafka),
             "--controller-port", str(ports.kafka_controller), "--data-dir", str(RUN / "kafka")],
            lambda: (
                port_open("127.0.0.1", ports.kafka)
                and bool(create_topics(ports.bootstrap, timeout_s=5) is not None)
            ),
            90,
            env,
        ),
        Component(
            "flink",
            [PY, "-m", "runner", "run", "--bootstrap", ports.bootstrap,
             "--rest-port", str(ports.flink)],
            lambda: running_job(ports.flink) is not None,
            300,
            {**env, "MOEX_WATERMARK_DELAY_MS": make_up_watermark_delay()},
        ),
        producer_component(ports.bootstrap, producer_args, RUN, timeout_s=30),
        # Half the cores (1 on 2): Kafka and the Flink job share the machine.
        gateway_component(
            ports.gateway, ports.bootstrap, RUN,
            ["--workers", os.environ.get("GATEWAY_WORKERS", "auto")],
        ),
    ]  # fmt: skip


def up(ports: Ports, producer_args: list[str], watch: bool = False) -> int:
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
    # Taken before the job starts: a file saved while it is planned is reloaded once it runs.
    watcher = SourceWatcher([SQL_DIR, ROOT / "udfs"], ROOT) if watch else None

    def reload_on_save() -> None:
        assert watcher is not None
        changes = watcher.changed()
        if changes:
            run_reload(changes, ROOT)

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
        if watcher is not None:
            print("watch: a saved file in sql/ or udfs/ reloads the job (make reload)", flush=True)

    return supervise(started, stages, RUN / "up.pid", reload_on_save if watch else None)


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


def status() -> int:
    pids = sorted((RUN / "pids").glob("*.pid")) if (RUN / "pids").exists() else []
    if not pids:
        print("nothing running (make up starts it)")
        return 1
    total = 0.0
    for pid_file in pids:
        pid = int(pid_file.read_text())
        alive = group_alive(pid)
        rss = tree_rss_mib(pid) if alive else 0.0
        total += rss
        print(
            f"{pid_file.stem:13s} pid {pid:<8d} {'running' if alive else 'stopped':8s} {rss:8.0f} MiB"
        )
    print(f"{'total':13s} {'':22s} {total:8.0f} MiB resident")
    if (RUN / "pids" / "jobmanager.pid").exists():
        # make up-cluster runs: its job lives on the JobManager (the runner only submitted it),
        # and its budget applies.
        from stack.cluster import BUDGET_MIB, ClusterPorts

        print(job_status_line(RUN / "runner.json", ClusterPorts().flink))

        verdict = "within" if total < BUDGET_MIB else "OVER"
        print(f"{'':36s} {verdict} the cluster's budget of {BUDGET_MIB} MiB")
    else:
        print(job_status_line(RUN / "runner.json"))
    return 0


def job_status_line(pid_file: Path, rest_port: int | None = None) -> str:
    """`job  RUNNING, 0 restarts` (+ the last exception in one line): a job restarting in a
    loop shows here, not only in the Flink log."""
    from runner.flink_rest import runner_job_health

    health = runner_job_health(pid_file, rest_port)
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
    parser.add_argument(
        "--watch",
        action="store_true",
        default=os.environ.get("WATCH", "") not in ("", "0"),
        help="reload the job when a file in sql/ or udfs/ is saved (make up WATCH=1)",
    )
    args = parser.parse_args(argv)
    if args.command == "down":
        return down()
    if args.command == "status":
        return status()
    return up(Ports(), args.producer_args.split(), watch=args.watch)


if __name__ == "__main__":
    sys.exit(main())
