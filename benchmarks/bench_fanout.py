"""fanout: 100 and 1,000 concurrent SSE clients on one gateway: delay, gateway CPU and RSS.

One gateway (`python -m gateway`, --max-clients raised to fit) serves a catalog with one stream,
`fanout`, on topic bench.fanout. One client process (benchmarks/sse_clients.py: asyncio, raw
sockets) opens N connections to /api/events?streams=fanout (all tickers). Once every client has
its `ready` event, a kafka-python producer (acks=all, linger 0) publishes ROWS_PER_S rows a
second for DURATION_S seconds, each carrying `published_ms` = the publisher's wall clock just
before it sent the row. A delivery's delay = its receipt wall clock (when the client read the
bytes) minus published_ms: Kafka produce + the gateway's reader + fan-out + the socket + the
client's own event loop. Gateway CPU from /proc/<pid>/stat over the publishing period; its peak
RSS. The client process's CPU is reported too: when it nears one core, its own queueing is
part of the delay.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from benchmarks.common import (
    PY,
    TICKERS,
    Proc,
    Result,
    Sampler,
    child_env,
    create_extra_topics,
    kafka_broker,
    median,
    say,
    wait_for,
    workspace,
)
from stack.kafka import free_port

TOPIC = "bench.fanout"
ROWS_PER_S = 20
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


def publish(bootstrap: str, rows_per_s: float, duration_s: float, first_seq: int) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
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
    producer.close()
    return count


PROFILE_DIR = "MOEX_BENCH_PYSPY"  # env: a folder for py-spy profiles of the gateway under load


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


def one_run(work, bootstrap: str, clients: int, duration_s: float, label: str, seq: int) -> dict:
    catalog = work / "catalog.json"
    port = free_port()
    env = child_env(work)
    gateway = Proc(
        "gateway",
        [
            PY, "-m", "gateway", "--port", str(port), "--bootstrap", bootstrap,
            "--catalog", str(catalog), "--max-clients", str(clients + 50),
            "--log-level", "warning",
        ],
        work / f"gateway-{label}.log",
        env,
    )  # fmt: skip
    client_proc = None
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return json.load(resp)["streams"]["fanout"]["state"] == "live"

        wait_for(healthy, 60, "the gateway", gateway)
        ready_file = work / f"ready-{label}.json"
        summary_file = work / f"clients-{label}.json"
        client_proc = Proc(
            "sse-clients",
            [
                PY, "-m", "benchmarks.sse_clients", "--port", str(port),
                "--path", "/api/events?streams=fanout", "--clients", str(clients),
                "--ready-file", str(ready_file), "--out", str(summary_file),
                "--connect-timeout", "90",
            ],
            work / f"clients-{label}.log",
            env,
        )  # fmt: skip
        wait_for(ready_file.exists, 120, f"{clients} SSE clients", client_proc)
        ready = json.loads(ready_file.read_text())["ready"]
        sampler = Sampler({"gateway": gateway.pid, "clients": client_proc.pid}, every_s=0.5)
        sampler.start()
        sampler.mark("start")
        profiler = _profile(gateway.pid, duration_s, label)
        published = publish(bootstrap, ROWS_PER_S, duration_s, seq)
        if profiler is not None:
            profiler.wait(60)
        time.sleep(2.0)  # the last rows' way to every client
        sampler.mark("end")
        sampler.stop()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            health = json.load(resp)
        client_proc.stop(timeout_s=30)
        summary = json.loads(summary_file.read_text())
        cpu = sampler.cpu_between("start", "end")
        expected = published * clients
        return {
            "clients": clients,
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
            "dropped_clients": health.get("dropped_clients"),
            "gateway_cpu_cores": round(cpu.get("gateway", 0.0), 3),
            "gateway_peak_rss_mb": round(sampler.peak_rss.get("gateway", 0.0), 1),
            "client_process_cpu_cores": round(cpu.get("clients", 0.0), 3),
            "client_process_peak_rss_mb": round(sampler.peak_rss.get("clients", 0.0), 1),
        }
    finally:
        if client_proc is not None and client_proc.alive():
            client_proc.stop()
        gateway.stop()


def run(quick: bool, repeat: int, keep: bool = False) -> Result:
    result = Result("fanout")
    sizes = (100,) if quick else (100, 1000)
    duration_s = 8.0 if quick else 20.0
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    with workspace("fanout", keep) as work, kafka_broker(work) as broker:
        create_extra_topics(broker.bootstrap, [TOPIC])
        (work / "catalog.json").write_text(json.dumps(CATALOG))
        seq = 0
        for index in range(repeat):
            for clients in sizes:
                say(f"fanout: {clients} clients, {ROWS_PER_S} rows/s for {duration_s:.0f} s "
                    f"(run {index + 1}/{repeat})")  # fmt: skip
                run_result = one_run(
                    work, broker.bootstrap, clients, duration_s, f"{clients}-{index}", seq
                )
                seq += run_result["rows_published"]
                runs[clients].append(run_result)
                delay = run_result["delay_ms"]
                say(
                    f"fanout: {clients} clients: p50 {delay['p50']} ms, p99 {delay['p99']} ms, "
                    f"{run_result['deliveries']:,}/{run_result['deliveries_expected']:,} "
                    f"delivered, gateway {run_result['gateway_cpu_cores']} cores"
                )
    for clients, done in runs.items():
        p50 = median(r["delay_ms"]["p50"] for r in done)
        p99 = median(r["delay_ms"]["p99"] for r in done)
        target = "p99 < 100 ms" if clients == 1000 else ""
        result.row(
            f"{clients} clients: delay p50 / p99",
            f"{p50} / {p99}",
            "ms",
            target=target,
            met=(p99 is not None and p99 < 100) if target else None,
            runs=[(r["delay_ms"]["p50"], r["delay_ms"]["p99"]) for r in done],
        )
        result.row(
            f"{clients} clients: delivered / expected, dropped clients",
            f"{sum(r['deliveries'] for r in done):,} / "
            f"{sum(r['deliveries_expected'] for r in done):,}, "
            f"{sum(r['dropped_clients'] or 0 for r in done)}",
            "",
        )
        result.row(
            f"{clients} clients: gateway CPU / peak RSS",
            f"{median(r['gateway_cpu_cores'] for r in done)} cores / "
            f"{median(r['gateway_peak_rss_mb'] for r in done)} MiB",
            "",
            runs=[(r["gateway_cpu_cores"], r["gateway_peak_rss_mb"]) for r in done],
        )
        result.row(
            f"{clients} clients: client process CPU",
            median(r["client_process_cpu_cores"] for r in done),
            "cores",
        )
    result.details = {
        "params": {
            "rows_per_s": ROWS_PER_S,
            "duration_s": duration_s,
            "client_counts": list(sizes),
            "subscription": "/api/events?streams=fanout (all tickers)",
        },
        "runs": {str(k): v for k, v in runs.items()},
    }
    return result
