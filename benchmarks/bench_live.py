"""live: the highest input rate the live job keeps up with, and latency at each rate; rss.

Runs the platform as `make up` does, on free ports in a temp folder: a broker, `python -m runner
run` (every sql/ output, exactly-once, checkpoints every 5 s), `python -m gateway` and one SSE
client subscribed to `anomalies` (the gateway serves it from the at-least-once anomalies_live).
benchmarks/loadgen.py then sends trades and as many book snapshots per second, their event time
being the wall clock, in steps (2 K, 5 K, 10 K, 20 K, 40 K trades/s). Each step: warm-up, then a
measured minute during which
  - the lag of the job's consumer group on moex.trades and on moex.orderbook (end offsets -
    committed offsets) is sampled every 2 s; an input keeps up when its lag does not grow
    (least-squares slope under 5 % of the rate), stays under 15 s of input, and (trades) the
    generator really sent >= 95 % of the rate. A step is sustained when both inputs kept up;
    until 2026-11-30 19:50 UTC only the trades counted, so earlier "kept up" figures let the
    books fall behind (docs/performance.md, Engine);
  - latency (a): a candles_1s row seen by a read_committed consumer, from the bar's window_end;
  - latency (b): an injected 3 % price jump (one ticker in turn every 2 s) seen on
    anomalies_live, from the spike trade's ts; (c) the same alert received by the SSE client;
  - Flink's REST API gives each vertex's busy and back-pressured time (the bottleneck) and the
    checkpoint durations.
The first step at which the trades fall behind ends the stepping (books behind alone do not:
the next steps' latencies are still measured). RSS and CPU of every component are
sampled every second throughout (the `rss` benchmark).

Over 300 lines: one benchmark, its phases (start, step, measure, report) read top to bottom.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from benchmarks.bench_venv import bench_python
from benchmarks.flink_metrics import VertexProfiler, vertex_load
from benchmarks.harness import (
    PY,
    TICKERS,
    LagProbe,
    Proc,
    child_env,
    kafka_broker,
    say,
    wait_for,
    workspace,
)
from benchmarks.report import Result, latency_summary
from benchmarks.sampling import Sampler
from gateway.rows import parse_instant
from runner.flink_rest import rest, running_job
from stack.kafka import free_port

STEPS = (2_000, 5_000, 10_000, 20_000, 40_000)
CHECKPOINT_MS = 5_000
SPIKE_EVERY_S = 2.0
SPIKE_BAR_MS = 200  # the bars spikes are detected on (sql/10_views/bars.sql)
LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


class TopicRecorder(threading.Thread):
    """Records (receipt wall time, row) of every record on a topic from now on."""

    def __init__(self, bootstrap: str, topic: str, read_committed: bool) -> None:
        super().__init__(name=f"recorder-{topic}", daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            fetch_max_wait_ms=50,
            max_poll_records=5000,
        )
        partitions = self.consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end()
        for tp in tps:
            self.consumer.position(tp)  # resolve "end" now, not at the first poll
        self.rows: list[tuple[float, dict]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            batch = self.consumer.poll(timeout_ms=100)
            received = time.time()
            for records in batch.values():
                for record in records:
                    try:
                        self.rows.append((received, json.loads(record.value)))
                    except ValueError:
                        pass

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.consumer.close()


def instant_ms(value) -> float | None:
    moment = parse_instant(value)
    return None if moment is None else moment.timestamp() * 1000


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def alert_latencies(spikes: list[dict], rows: list[tuple[float, dict]]) -> tuple[list[float], int]:
    """ms from each spike trade's ts to the first alert row for it; and how many had none.

    The alert for a spike names its ticker and kind, and ends with the spike trade's bar
    (end_ts = the end of that 200-ms bar: sql/60_anomalies)."""
    first_seen: dict[tuple[str, str, float], float] = {}
    for received, row in rows:
        end = instant_ms(row.get("end_ts"))
        key = (row.get("ticker"), row.get("kind"), end)
        if key not in first_seen or received < first_seen[key]:
            first_seen[key] = received
    latencies, missing = [], 0
    for spike in spikes:
        bar_end = (spike["ts"] // SPIKE_BAR_MS + 1) * SPIKE_BAR_MS
        received = first_seen.get((spike["ticker"], spike["kind"], float(bar_end)))
        if received is None:
            missing += 1
        else:
            latencies.append(received * 1000 - spike["ts"])
    return latencies, missing


def sse_rows(path: Path) -> list[tuple[float, dict]]:
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
            if event["event"] == "anomalies":
                rows.append((event["recv"], json.loads(event["data"])))
        except (ValueError, KeyError):
            continue
    return rows


def checkpoint_stats(port: int, job_id: str) -> dict:
    try:
        stats = rest(port, f"/jobs/{job_id}/checkpoints")
    except Exception as exc:
        return {"error": str(exc)}
    latest = (stats.get("latest") or {}).get("completed") or {}
    summary = (stats.get("summary") or {}).get("end_to_end_duration") or {}
    return {
        "completed": stats.get("counts", {}).get("completed"),
        "failed": stats.get("counts", {}).get("failed"),
        "latest_end_to_end_ms": latest.get("end_to_end_duration"),
        "latest_size_bytes": latest.get("checkpointed_size", latest.get("state_size")),
        "end_to_end_ms_p50": summary.get("p50"),
        "end_to_end_ms_p99": summary.get("p99"),
        "end_to_end_ms_max": summary.get("max"),
    }


def run(quick: bool, repeat: int, keep: bool = False) -> tuple[Result, Result]:
    result, rss = Result("live"), Result("rss")
    steps = STEPS[:1] if quick else STEPS
    warmup_s, measure_s = (3, 12) if quick else (10, 60)
    load_python = bench_python(create=True) or Path(PY)
    with workspace("live", keep) as work, kafka_broker(work) as broker:
        bootstrap = broker.bootstrap
        rest_port, gateway_port = free_port(), free_port()
        catalog = work / "catalog.json"
        env = child_env(work)
        runner = Proc(
            "flink",
            [
                PY, "-m", "runner", "run",
                "--bootstrap", bootstrap,
                "--fresh",
                "--group-id", "bench-live",
                "--txn-prefix", "bench-live",
                "--checkpoint-dir", str(work / "checkpoints"),
                "--checkpoint-ms", str(CHECKPOINT_MS),
                "--rest-port", str(rest_port),
                "--catalog", str(catalog),
                "--pid-file", str(work / "runner.json"),
            ],
            work / "runner.log",
            env,
        )  # fmt: skip
        procs = [runner]
        sampler = Sampler(
            {"kafka": broker.process.pid, "flink": runner.pid}, every_s=1.0, split="flink"
        ).start()
        recorders: list[TopicRecorder] = []
        lag = books_lag = None
        step_results: list[dict] = []
        job_start_s = None
        failure = None
        try:
            say("live: starting the Flink job (every sql/ output)")
            started = time.monotonic()
            job = wait_for(lambda: running_job(rest_port), 300, "the Flink job", runner, 1.0)
            job_id = job["jid"]
            job_start_s = time.monotonic() - started
            say(f"live: job {job_id} running after {job_start_s:.0f} s")
            gateway = Proc(
                "gateway",
                [
                    PY, "-m", "gateway", "--port", str(gateway_port), "--bootstrap", bootstrap,
                    "--catalog", str(catalog), "--log-level", "warning",
                ],
                work / "gateway.log",
                env,
            )  # fmt: skip
            procs.append(gateway)
            sampler.add("gateway", gateway.pid)
            import urllib.request

            def gateway_ready() -> bool:
                url = f"http://127.0.0.1:{gateway_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = json.load(response)
                return response.status == 200 and body["streams"]["anomalies"]["state"] == "live"

            wait_for(gateway_ready, 60, "the gateway", gateway)
            sse_log = work / "sse-events.jsonl"
            ready_file = work / "sse-ready.json"
            sse = Proc(
                "sse-client",
                [
                    PY, "-m", "benchmarks.sse_clients", "--port", str(gateway_port),
                    "--path", "/api/events?streams=anomalies", "--clients", "1",
                    "--record", str(sse_log), "--ready-file", str(ready_file),
                    "--out", str(work / "sse-summary.json"),
                ],
                work / "sse-client.log",
                env,
            )  # fmt: skip
            procs.append(sse)
            sampler.add("sse client", sse.pid)
            wait_for(ready_file.exists, 30, "the SSE client", sse)
            candles = TopicRecorder(bootstrap, "moex.candles_1s", read_committed=True)
            alerts = TopicRecorder(bootstrap, "moex.anomalies_live", read_committed=False)
            recorders = [candles, alerts]
            for recorder in recorders:
                recorder.start()
            lag = LagProbe(bootstrap, "bench-live", "moex.trades")
            books_lag = LagProbe(bootstrap, "bench-live", "moex.orderbook")

            for rate in steps:
                step = run_step(
                    work, bootstrap, load_python, rate, warmup_s, measure_s, sampler,
                    lag, books_lag, candles, alerts, sse_log, rest_port, job_id, procs,
                )  # fmt: skip
                step_results.append(step)
                verdict = "kept up" if step["sustained"] else "FELL BEHIND"
                if step["trades_kept_up"] and not step["books_kept_up"]:
                    verdict = (
                        "trades kept up, books FELL BEHIND "
                        f"(slope {step['books_lag_slope_per_s']:,.0f}/s)"
                    )
                if step["generator_short"]:
                    verdict = f"generator sent only {step['sent_trades_per_s']:,.0f}/s"
                say(
                    f"live: {rate:,}/s -> {verdict}; "
                    f"lag max {step['lag_max']:,}, slope {step['lag_slope_per_s']:,.0f}/s; "
                    f"candles_1s p99 {step['latency_candles_1s_ms']['p99_ms']} ms, "
                    f"alert->SSE p99 {step['latency_alert_sse_ms']['p99_ms']} ms"
                )
                if not step["trades_kept_up"]:  # books behind: still worth the next step
                    break
        except Exception as exc:  # keep what was measured; the table shows the error
            failure = f"{type(exc).__name__}: {exc}"
            say(f"live: {failure}")
        finally:
            for recorder in recorders:
                recorder.stop()
            for probe in (lag, books_lag):
                if probe is not None:
                    probe.close()
            sampler.sample()
            sampler.stop()
            for proc in reversed(procs):
                proc.stop()
        runner_log = (work / "runner.log").read_text(errors="replace")[-4000:]

    if failure is not None:
        if not step_results:
            raise RuntimeError(failure)
        result.error = failure
    top_rate = 0  # the highest step sustained, like every step below it
    for step_result in step_results:
        if not step_result["sustained"]:
            break
        top_rate = step_result["rate"]
    result.row(
        "highest sustained rate (trades/s + as many books/s)",
        top_rate,
        "trades/s",
        target="40 K trades/s + 40 K books/s (issue #11)",
        met=top_rate >= 40_000,
        runs=[(s["rate"], s["sustained"]) for s in step_results],
    )
    trades_only = [s["rate"] for s in step_results if s["trades_kept_up"]]
    result.row(
        "highest rate at which the trades alone kept up (books may lag)",
        max(trades_only, default=0),
        "trades/s",
        runs=[(s["rate"], s["trades_kept_up"], s["books_kept_up"]) for s in step_results],
    )
    result.row(
        "runner run (every output, as make up starts it) -> job RUNNING",
        None if job_start_s is None else round(job_start_s, 1),
        "s",
        target="make up -> first 1-min candle <= 20 s",
        met=False
        if job_start_s is not None and job_start_s > 20
        else None,  # RUNNING is not yet a candle
    )
    for step in step_results:
        tag = f"@{step['rate'] // 1000} K/s"
        a, b, c = (
            step["latency_candles_1s_ms"],
            step["latency_alert_live_ms"],
            step["latency_alert_sse_ms"],
        )
        result.row(
            f"{tag} (a) candles_1s visible read_committed, from window_end p50/p95/p99",
            f"{a['p50_ms']} / {a['p95_ms']} / {a['p99_ms']}",
            "ms",
            target=f"p99 <= {CHECKPOINT_MS + 1000} ms (checkpoint + 1 s)",
            met=a["p99_ms"] is not None and a["p99_ms"] <= CHECKPOINT_MS + 1000,
        )
        result.row(
            f"{tag} (b) spike trade -> anomalies_live p50/p95/p99",
            f"{b['p50_ms']} / {b['p95_ms']} / {b['p99_ms']}",
            "ms",
        )
        result.row(
            f"{tag} (c) spike trade -> SSE client p50/p95/p99",
            f"{c['p50_ms']} / {c['p95_ms']} / {c['p99_ms']}",
            "ms",
            target="p99 <= 1000 ms",
            met=c["p99_ms"] is not None and c["p99_ms"] <= 1000,
        )
        result.row(
            f"{tag} lag max / slope; generator sent; machine load avg",
            f"{step['lag_max']:,} / {step['lag_slope_per_s']:,.0f}/s; "
            f"{step['sent_trades_per_s']:,.0f} trades/s + {step['sent_books_per_s']:,.0f} books/s; "
            f"{step['load_avg_1min_start_end'][1]}",
            "",
        )
        if step["profile"]:
            top = step["profile"][0]
            result.row(
                f"{tag} busiest vertex",
                f"{top['vertex'][:60]}: busy {top['busy_pct_of_time']} %, "
                f"backpressured {top['backpressured_pct_of_time']} %",
                "",
            )
    result.details = {
        "params": {
            "steps_trades_per_s": list(steps),
            "books_per_s": "same as trades",
            "tickers": TICKERS,
            "warmup_s": warmup_s,
            "measure_s": measure_s,
            "checkpoint_ms": CHECKPOINT_MS,
            "spike_every_s": SPIKE_EVERY_S,
            "job_start_s": None if job_start_s is None else round(job_start_s, 1),
            "load_generator": str(load_python),
        },
        "steps": step_results,
        "runner_log_tail": runner_log[-1500:],
    }
    for part, peak in sorted(sampler.peak_rss.items()):
        rss.row(f"peak RSS: {part}", round(peak), "MiB")
    rss.row("peak RSS: producer (python -m producer, --rate 0)", "see the producer benchmark", "")
    rss.details = {
        "peak_rss_mb": {k: round(v, 1) for k, v in sampler.peak_rss.items()},
        "cpu_cores_per_step": {s["rate"]: s["cpu_cores"] for s in step_results},
    }
    rss.notes.append(
        "sampled every second during the live benchmark; `flink` is the runner's process tree: "
        "its Python client, the JVM hosting the MiniCluster, and the Python UDF workers"
    )
    return result, rss


def run_step(
    work: Path,
    bootstrap: str,
    load_python: Path,
    rate: int,
    warmup_s: float,
    measure_s: float,
    sampler: Sampler,
    lag: LagProbe,
    books_lag: LagProbe,
    candles: TopicRecorder,
    alerts: TopicRecorder,
    sse_log: Path,
    rest_port: int,
    job_id: str,
    procs: list[Proc],
) -> dict:
    spikes_file = work / f"spikes-{rate}.jsonl"
    say(f"live: step {rate:,} trades/s + {rate:,} books/s ({warmup_s:.0f} s warm-up, "
        f"{measure_s:.0f} s measured)")  # fmt: skip
    load = Proc(
        f"load-{rate}",
        [
            str(load_python), str(LOADGEN), "live", "--bootstrap", bootstrap,
            "--rate", str(rate), "--book-rate", str(rate),
            "--duration", str(warmup_s + measure_s),
            "--spike-every", str(SPIKE_EVERY_S), "--spikes-out", str(spikes_file),
            "--seed", str(rate),
        ],
        work / f"load-{rate}.log",
        child_env(work),
    )  # fmt: skip
    procs.append(load)
    sampler.add("load generator", load.pid)
    load_start = time.time()
    load_avg_start = os.getloadavg()[0]
    time.sleep(warmup_s)
    sampler.mark(f"{rate}-start")
    measure_start = time.time()
    measure_end = load_start + warmup_s + measure_s
    lag_points: list[tuple[float, float]] = []
    books_points: list[tuple[float, float]] = []
    profiler = VertexProfiler(first_interval_s=5.0)
    next_profile = time.monotonic()
    while time.time() < measure_end:
        now = time.time()
        try:
            lag_points.append((now - measure_start, lag.sample()[0]))
            books_points.append((now - measure_start, books_lag.sample()[0]))
        except Exception as exc:
            say(f"live: lag sample failed: {exc}")
        if time.monotonic() >= next_profile:
            try:
                profiler.add(vertex_load(rest_port, job_id))
            except Exception:
                pass
            next_profile += 5.0
        time.sleep(max(0.0, min(2.0, measure_end - time.time())))
    sampler.mark(f"{rate}-end")
    cpu = {k: round(v, 2) for k, v in sampler.cpu_between(f"{rate}-start", f"{rate}-end").items()}
    load.wait(30)
    load.stop()
    procs.remove(load)
    sampler.roots.pop("load generator", None)
    done = {}
    for line in load.log_path.read_text().splitlines():
        if line.startswith("{") and '"done"' in line:
            done = json.loads(line)
    checkpoints = checkpoint_stats(rest_port, job_id)
    # Rows of the measured minute still on their way (next checkpoint, SSE) get a few seconds.
    time.sleep(CHECKPOINT_MS / 1000 + 3)
    drained_after = None
    drain_start = time.monotonic()
    while time.monotonic() - drain_start < 45:
        try:
            if lag.sample()[0] <= 0:
                drained_after = round(time.monotonic() - drain_start + CHECKPOINT_MS / 1000 + 3, 1)
                break
        except Exception:
            pass
        time.sleep(1)

    spikes = (
        [json.loads(x) for x in spikes_file.read_text().splitlines()]
        if spikes_file.exists()
        else []
    )
    measured_spikes = [
        s for s in spikes if measure_start * 1000 <= s["ts"] <= (measure_end - 3) * 1000
    ]
    candle_latencies = []
    for received, row in list(candles.rows):
        end = instant_ms(row.get("window_end"))
        if end is not None and measure_start * 1000 <= end <= (measure_end - 2) * 1000:
            candle_latencies.append(received * 1000 - end)
    expected_candles = len(TICKERS) * int(measure_end - 2 - measure_start)
    live_latencies, live_missing = alert_latencies(measured_spikes, list(alerts.rows))
    sse_latencies, sse_missing = alert_latencies(measured_spikes, sse_rows(sse_log))

    lag_values = [v for _, v in lag_points]
    lag_slope = slope(lag_points)
    sent_trades = done.get("trades_per_s", 0.0)
    lag_max = max(lag_values) if lag_values else 0
    # Offsets are committed once per checkpoint, so the lag is a saw-tooth of one checkpoint
    # interval's input: its slope means something only over several intervals (not --quick).
    short = measure_s < 6 * CHECKPOINT_MS / 1000
    trend_ok = lag_slope <= 0.05 * rate or short
    trades_kept_up = (
        bool(lag_values) and sent_trades >= 0.95 * rate and trend_ok and lag_max <= 15 * rate
    )
    # The step sends as many books as trades: it is sustained only if both inputs kept up.
    books_slope = slope(books_points)
    books_max = max((v for _, v in books_points), default=0)
    books_kept_up = (
        bool(books_points) and (books_slope <= 0.05 * rate or short) and books_max <= 15 * rate
    )
    sustained = trades_kept_up and books_kept_up
    profile = profiler.top(8)
    return {
        "rate": rate,
        "sustained": sustained,
        "trades_kept_up": trades_kept_up,
        "books_kept_up": books_kept_up,
        # The generator itself could not send the rate: the step says nothing about the job.
        "generator_short": sent_trades < 0.95 * rate,
        "load_avg_1min_start_end": [round(load_avg_start, 2), round(os.getloadavg()[0], 2)],
        "sent_trades_per_s": sent_trades,
        "sent_books_per_s": done.get("books_per_s", 0.0),
        "generator": done.get("client"),
        "generator_errors": done.get("errors"),
        "lag_max": int(lag_max),
        "lag_last": int(lag_values[-1]) if lag_values else None,
        "lag_max_seconds_of_input": round(lag_max / rate, 2),
        "lag_slope_per_s": round(lag_slope, 1),
        "books_lag_max": int(books_max),
        "books_lag_slope_per_s": round(books_slope, 1),
        "lag_samples": [(round(t, 1), int(v)) for t, v in lag_points],
        "drained_after_s": drained_after,
        "latency_candles_1s_ms": {
            **latency_summary(candle_latencies),
            "expected_rows": expected_candles,
        },
        "latency_alert_live_ms": {**latency_summary(live_latencies), "missing": live_missing},
        "latency_alert_sse_ms": {**latency_summary(sse_latencies), "missing": sse_missing},
        "spikes_measured": len(measured_spikes),
        "checkpoints": checkpoints,
        "profile": profile,
        "cpu_cores": cpu,
    }
