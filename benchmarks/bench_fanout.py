"""fanout: SSE clients of the gateway: delay, CPU and memory, on one process and across workers.

Three loads (`SIZES`): 100 and 1,000 clients on one gateway process at 20 rows/s (every client
gets every row), and 10,000 clients on `python -m gateway --workers 2` (SO_REUSEPORT) at 1 row/s.
A catalog with one stream, `fanout`, on topic bench.fanout. The clients (benchmarks/sse_clients.py:
asyncio Protocols, no per-event parsing beyond the timestamp; two processes for 10,000) open N
connections to /api/events?streams=fanout (all tickers). Once every client has its `ready`
event, a kafka-python producer (acks=all, linger 0) publishes the rows for DURATION_S seconds,
each carrying `published_ms` = the publisher's wall clock just before it sent the row. A
delivery's delay = its receipt wall clock (when the client read the bytes) minus published_ms:
Kafka produce + the gateway's reader + fan-out + the socket + the client's own event loop.
CPU of the gateway's and the clients' process trees (psutil) over the publishing period; the
gateway's RSS before the clients connect and at its peak: (peak - idle) / clients = memory per
client. MOEX_BENCH_PYSPY=dir also records a py-spy profile of the gateway during each run.

Over 300 lines: one benchmark, its three scales (100, 1,000, 10,000 clients) share every step.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from benchmarks.harness import (
    PY,
    TICKERS,
    Proc,
    child_env,
    create_extra_topics,
    kafka_broker,
    say,
    wait_for,
    workspace,
)
from benchmarks.report import Result, median
from benchmarks.sampling import Sampler, tree_usage
from benchmarks.sse_clients import raise_fd_limit
from stack.kafka import free_port

TOPIC = "bench.fanout"
# clients, gateway workers, client processes, rows/s, p99 target (ms)
SIZES = ((100, 1, 1, 20, None), (1000, 1, 1, 20, 100.0), (10_000, 2, 2, 1, 250.0))
CATALOG = {
    "outputs": [
        {
            "name": "fanout",
            "topic": TOPIC,
            "live_topic": None,
            "description": "benchmark rows stamped with their publish time",
            "grain": ["ticker", "seq"],
            "guarantee": "at-least-once",
            "dedup_key": None,
            "columns": [
                {"name": "ticker", "type": "STRING"},
                {"name": "seq", "type": "BIGINT"},
                {"name": "published_ms", "type": "DOUBLE"},
            ],
        }
    ]
}


def warm_producer(bootstrap: str):
    """An idempotent producer that has its metadata and producer id and has sent one row: the
    first send of a new producer waits for both, which would count as delivery delay."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    producer.send(TOPIC, value=b'{"ticker":"WARMUP","seq":-1,"published_ms":0}', key=b"WARMUP")
    producer.flush(30)
    return producer


def publish(producer, rows_per_s: float, duration_s: float, first_seq: int) -> int:
    keys = [t.encode() for t in TICKERS]
    count = int(rows_per_s * duration_s)
    started = time.monotonic()
    for index in range(count):
        delay = started + index / rows_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        seq = first_seq + index
        ticker = TICKERS[seq % len(TICKERS)]
        row = f'{{"ticker":"{ticker}","seq":{seq},"published_ms":{time.time() * 1000:.3f}}}'
        producer.send(TOPIC, value=row.encode(), key=keys[seq % len(keys)])
    producer.flush(30)
    return count


PROFILE_DIR = "MOEX_BENCH_PYSPY"  # env: a folder for py-spy profiles of the gateway under load
PRIORITY = "MOEX_BENCH_PRIORITY"  # env: a nice value (e.g. -10) for the gateway and the clients


def prioritise(pid: int) -> None:
    """On a machine shared with other work, give the measured processes their CPU on time.

    The scheduler shares the cores between sessions (autogroups) first: with ~15 busy sessions
    a gateway that needs 0.2 core gets it in slices late enough to add seconds of delay, which
    measures the machine's queue, not the gateway. MOEX_BENCH_PRIORITY=-10 raises the weight of
    the gateway's and the clients' sessions (and their processes), for as long as they run.
    """
    value = os.environ.get(PRIORITY)
    if not value:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(value)
    except OSError:
        pass  # no autogroups (or not allowed): the process priority below still applies
    try:
        os.setpriority(os.PRIO_PGRP, pid, int(value))
    except OSError as exc:
        say(f"fanout: cannot set priority {value}: {exc}")


def _profile(pid: int, duration_s: float, label: str) -> subprocess.Popen | None:
    """py-spy record of the gateway (and its threads) while rows are published, if asked for."""
    folder = os.environ.get(PROFILE_DIR)
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(Path(PY).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "200",
            "--duration", str(int(duration_s)), "--format", "raw", "--threads", "--nonblocking",
            "--output", str(Path(folder) / f"gateway-{label}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def one_run(
    work,
    bootstrap: str,
    size: tuple,
    duration_s: float,
    label: str,
    seq: int,
) -> dict:
    clients, workers, client_processes, rows_per_s, _ = size
    catalog = work / "catalog.json"
    port = free_port()
    env = child_env(work)
    gateway = Proc(
        "gateway",
        [
            PY, "-m", "gateway", "--port", str(port), "--bootstrap", bootstrap,
            "--catalog", str(catalog), "--max-clients", str(clients + 50),
            "--workers", str(workers), "--log-level", "warning",
        ],
        work / f"gateway-{label}.log",
        env,
    )  # fmt: skip
    prioritise(gateway.pid)
    client_proc = None
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return json.load(resp)["streams"]["fanout"]["state"] == "live"

        wait_for(healthy, 60, "the gateway", gateway)
        producer = warm_producer(bootstrap)  # before the clients: they never see its row
        time.sleep(2.0 if workers > 1 else 0.0)  # the other workers' readers too
        idle_rss_mb, _ = tree_usage(gateway.pid)
        ready_file = work / f"ready-{label}.json"
        summary_file = work / f"clients-{label}.json"
        client_proc = Proc(
            "sse-clients",
            [
                PY, "-m", "benchmarks.sse_clients", "--port", str(port),
                "--path", "/api/events?streams=fanout", "--clients", str(clients),
                "--ready-file", str(ready_file), "--out", str(summary_file),
                "--connect-timeout", "180", "--processes", str(client_processes),
            ],
            work / f"clients-{label}.log",
            env,
        )  # fmt: skip
        prioritise(client_proc.pid)
        wait_for(ready_file.exists, 240, f"{clients} SSE clients", client_proc)
        ready = json.loads(ready_file.read_text())["ready"]
        sampler = Sampler({"gateway": gateway.pid, "clients": client_proc.pid}, every_s=0.5)
        sampler.start()
        sampler.mark("start")
        profiler = _profile(gateway.pid, duration_s, label)
        published = publish(producer, rows_per_s, duration_s, seq)
        producer.close(10)
        if profiler is not None:
            profiler.wait(60)
        time.sleep(2.0)  # the last rows' way to every client
        sampler.mark("end")
        sampler.stop()
        dropped = dropped_clients(port, workers)
        client_proc.stop(timeout_s=30)
        summary = json.loads(summary_file.read_text())
        cpu = sampler.cpu_between("start", "end")
        expected = published * clients
        peak_rss_mb = sampler.peak_rss.get("gateway", 0.0)
        return {
            "clients": clients,
            "workers": workers,
            "rows_per_s": rows_per_s,
            "ready": ready,
            "rows_published": published,
            "deliveries": summary["events"],
            "deliveries_expected": expected,
            "deliveries_per_s": round(summary["events"] / (duration_s + 2.0)),
            "delay_ms": summary["delay_ms"],
            "connect_s": summary["connect_s"],
            "per_client_min_max": [
                summary["events_per_client_min"],
                summary["events_per_client_max"],
            ],
            "client_errors": summary["error_count"],
            "dropped_clients": dropped,
            "closed_early": summary.get("closed_early"),
            "gateway_cpu_cores": round(cpu.get("gateway", 0.0), 3),
            "gateway_idle_rss_mb": round(idle_rss_mb, 1),
            "gateway_peak_rss_mb": round(peak_rss_mb, 1),
            "gateway_kib_per_client": round((peak_rss_mb - idle_rss_mb) * 1024 / clients, 1),
            "client_process_cpu_cores": round(cpu.get("clients", 0.0), 3),
            "client_process_peak_rss_mb": round(sampler.peak_rss.get("clients", 0.0), 1),
        }
    finally:
        if client_proc is not None and client_proc.alive():
            client_proc.stop()
        gateway.stop()


def dropped_clients(port: int, workers: int) -> int:
    """Clients the gateway dropped, summed over its workers (each /healthz answers for one
    process: new connections until every worker's pid has answered)."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 20
    while len(seen) < workers and time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            health = json.load(resp)
        seen[health["pid"]] = health["dropped_clients"]
    return sum(seen.values())


def run(quick: bool, repeat: int, keep: bool = False) -> Result:
    result = Result("fanout")
    sizes = SIZES[:1] if quick else SIZES
    if only := os.environ.get("MOEX_BENCH_FANOUT_CLIENTS"):  # e.g. 1000,10000: a subset
        sizes = tuple(size for size in sizes if str(size[0]) in only.split(","))
    duration_s = 8.0 if quick else 20.0
    runs: dict[int, list[dict]] = {size[0]: [] for size in sizes}
    raise_fd_limit()
    with workspace("fanout", keep) as work, kafka_broker(work) as broker:
        create_extra_topics(broker.bootstrap, [TOPIC])
        (work / "catalog.json").write_text(json.dumps(CATALOG))
        seq = 0
        for index in range(repeat):
            for size in sizes:
                clients, workers, _, rows_per_s, _ = size
                say(f"fanout: {clients} clients on {workers} gateway process(es), {rows_per_s} "
                    f"rows/s for {duration_s:.0f} s (run {index + 1}/{repeat})")  # fmt: skip
                run_result = one_run(
                    work, broker.bootstrap, size, duration_s, f"{clients}-{index}", seq
                )
                seq += run_result["rows_published"]
                runs[clients].append(run_result)
                delay = run_result["delay_ms"]
                say(
                    f"fanout: {clients} clients: p50 {delay['p50']} ms, p99 {delay['p99']} ms, "
                    f"{run_result['deliveries']:,}/{run_result['deliveries_expected']:,} "
                    f"delivered, {run_result['dropped_clients']} dropped, gateway "
                    f"{run_result['gateway_cpu_cores']} cores, clients "
                    f"{run_result['client_process_cpu_cores']} cores"
                )
    for clients, workers, _, rows_per_s, p99_target in sizes:
        done = runs[clients]
        where = (
            f"{clients:,} clients, {workers} process{'es' if workers > 1 else ''}, {rows_per_s}/s"
        )
        p99s = [r["delay_ms"]["p99"] for r in done]
        p50 = median(r["delay_ms"]["p50"] for r in done)
        worst = max((p for p in p99s if p is not None), default=None)
        complete = all(
            r["deliveries"] == r["deliveries_expected"] and not r["dropped_clients"] for r in done
        )
        result.row(
            f"{where}: delay p50 / p99 median / p99 worst",
            f"{p50} / {median(p99s)} / {worst}",
            "ms",
            target=f"p99 < {p99_target:.0f} ms every run" if p99_target else "",
            met=(None not in p99s and max(p99s) < p99_target) if p99_target else None,
            runs=[(r["delay_ms"]["p50"], r["delay_ms"]["p99"]) for r in done],
        )
        result.row(
            f"{where}: delivered / expected, dropped clients",
            f"{sum(r['deliveries'] for r in done):,} / "
            f"{sum(r['deliveries_expected'] for r in done):,}, "
            f"{sum(r['dropped_clients'] or 0 for r in done)}",
            "",
            target="all, none dropped",
            met=complete,
        )
        result.row(
            f"{where}: gateway CPU / clients' CPU",
            f"{median(r['gateway_cpu_cores'] for r in done)} / "
            f"{median(r['client_process_cpu_cores'] for r in done)}",
            "cores",
            runs=[(r["gateway_cpu_cores"], r["client_process_cpu_cores"]) for r in done],
        )
        result.row(
            f"{where}: gateway peak RSS, memory per client",
            f"{median(r['gateway_peak_rss_mb'] for r in done)} MiB, "
            f"{median(r['gateway_kib_per_client'] for r in done)} KiB",
            "",
            runs=[(r["gateway_peak_rss_mb"], r["gateway_kib_per_client"]) for r in done],
        )
    result.details = {
        "params": {
            "sizes": [
                {"clients": c, "workers": w, "client_processes": k, "rows_per_s": r}
                for c, w, k, r, _ in sizes
            ],
            "duration_s": duration_s,
            "priority": os.environ.get(PRIORITY),
            "subscription": "/api/events?streams=fanout (all tickers)",
        },
        "runs": {str(k): v for k, v in runs.items()},
    }
    return result
