"""peer: the same job in Flink (our SQL) and in Quix Streams, on the same preloaded topic.

The job: 1-minute OHLCV candles per ticker and EMA(12) of their closes (TA-Lib seeding), both
exactly-once into Kafka. Flink side: `python -m runner run --sql-dir benchmarks/sql_peer` (links
to the project's trades source, bars view and candles_1m, plus ema_12_1m.sql with the project's
ema_12 pandas UDAF). Quix side: benchmarks/peer_quix.py (quixstreams==3.28.1 in
.cache/bench-venv, processing_guarantee="exactly-once").

The input topic peer.trades holds a seeded synthetic session of 10 tickers, plus one trade per
ticker two minutes after the last, so that every real minute closes in both engines. Expected
output: one candle and one EMA row per (ticker, minute) of the session. Each engine starts with a
fresh consumer group from the earliest offset; a read_committed reader counts its rows, and
the time is from the process start (or from the job's start: Flink's REST `start-time`, Quix's
app.run()) to the arrival of the last expected row. Both commit every second (Flink's checkpoint
interval, Quix's commit_interval), so neither waits long to make its last rows visible. The EMA
values of both are compared as a check that they computed the same thing.

Over 300 lines: one benchmark, the Flink side and the peer side kept side by side.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.bench_replay import generate
from benchmarks.bench_venv import bench_python
from benchmarks.flink_metrics import VertexProfiler, vertex_load
from benchmarks.harness import (
    PY,
    Proc,
    child_env,
    create_extra_topics,
    kafka_broker,
    say,
    workspace,
)
from benchmarks.report import Result, median
from benchmarks.sampling import Sampler
from gateway.rows import parse_instant
from runner.flink_rest import rest, running_job
from stack.kafka import free_port

HERE = Path(__file__).resolve().parent
SQL_DIR = HERE / "sql_peer"
QUIX_SCRIPT = HERE / "peer_quix.py"
LOADGEN = HERE / "loadgen.py"
COMMIT_S = 1.0
RUN_TIMEOUT_S = 300  # no output at all by then: give up
STALL_S = 60  # no new output row for this long: the rest is not coming


class OutputCounter(threading.Thread):
    """Counts rows arriving on the output topics (read_committed) from their current ends."""

    def __init__(self, bootstrap: str, candles: str, ema: str | None, expected: int) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.candles, self.ema, self.expected = candles, ema, expected
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
            max_poll_records=10000,
        )
        tps = []
        topics = [candles] if ema is None else [candles, ema]
        for topic in topics:
            tps += [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end()
        for tp in tps:
            self.consumer.position(tp)
        self.counts = dict.fromkeys(topics, 0)
        self.ema_values: dict[tuple[str, float], float | None] = {}
        self.created = time.time()
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None
        self.done = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set() and not self.done.is_set():
            batch = self.consumer.poll(timeout_ms=100)
            received = time.time()
            for tp, records in batch.items():
                for record in records:
                    self.counts[tp.topic] += 1
                    if tp.topic == self.ema:
                        row = json.loads(record.value)
                        end = parse_instant(row.get("window_end"))
                        if end is not None:
                            self.ema_values[(row["ticker"], end.timestamp())] = row.get("ema_12")
            if batch:
                self.first_arrival = self.first_arrival or received
                self.last_arrival = received
            if all(c >= self.expected for c in self.counts.values()):
                self.done.set()

    def stalled(self) -> bool:
        """No new row for STALL_S (after a first one), or none at all after RUN_TIMEOUT_S."""
        now = time.time()
        if self.last_arrival is None:
            return now - self.created > RUN_TIMEOUT_S
        return now - self.last_arrival > STALL_S

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.consumer.close()


def prepare_input(work: Path, events: int) -> tuple[Path, int, int]:
    """The session's trades plus one closing trade per ticker; (file, trades, expected rows)."""
    # A session that ended in the past: Quix stamps its output records with event time, and
    # Kafka 4 refuses records stamped more than an hour ahead (log.message.timestamp.after.max.ms)
    # as a seeded session of today would be.
    start = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT10:00:00+03:00")
    source = generate(work, events, seed=11, start=start) / "trades.jsonl"
    minutes: set[tuple[str, int]] = set()
    last_ts: dict[str, int] = {}
    max_trade_id = 0
    count = 0
    with open(source) as lines:
        for line in lines:
            row = json.loads(line)
            minutes.add((row["ticker"], row["ts"] // 60_000))
            last_ts[row["ticker"]] = max(last_ts.get(row["ticker"], 0), row["ts"])
            max_trade_id = max(max_trade_id, row["trade_id"])
            count += 1
    closing_ts = max(last_ts.values()) + 120_000
    target = work / "peer-trades.jsonl"
    with open(target, "w") as out, open(source) as lines:
        for line in lines:
            out.write(line)
        for index, ticker in enumerate(sorted(last_ts)):
            trade_id = max_trade_id + 1 + index
            out.write(
                f'{{"event_id":"{ticker}:T:{trade_id}","ticker":"{ticker}","board":"TQBR",'
                f'"trade_id":{trade_id},"ts":{closing_ts},"price":100.00,"qty":1,"side":"B"}}\n'
            )
    return target, count, len(minutes)


def job_start_time(rest_port: int) -> tuple[float | None, str | None]:
    """When the job was submitted (Flink's `start-time`, epoch s), whatever its state."""
    jobs = rest(rest_port, "/jobs/overview")["jobs"]
    if not jobs:
        return None, None
    return jobs[0]["start-time"] / 1000, jobs[0]["jid"]


def flink_run(
    work: Path, bootstrap: str, expected: int, index: int | str, only: str | None = None
) -> dict:
    """One run of benchmarks/sql_peer; `only="candles_1m"` leaves the EMA (Python UDAF) out."""
    ema_topic = None if only == "candles_1m" else "peer.ema_12_1m"
    counter = OutputCounter(bootstrap, "peer.candles_1m", ema_topic, expected)
    counter.start()
    rest_port = free_port()
    launched = time.time()
    proc = Proc(
        "flink-peer",
        [
            PY, "-m", "runner", "run",
            "--sql-dir", str(SQL_DIR),
            "--bootstrap", bootstrap,
            "--topic-prefix", "peer.",
            "--group-id", f"peer-flink-{index}",
            "--txn-prefix", f"peer-flink-{index}",
            "--fresh",
            "--checkpoint-dir", str(work / f"checkpoints-{index}"),
            "--checkpoint-ms", str(int(COMMIT_S * 1000)),
            "--rest-port", str(rest_port),
            "--catalog", str(work / f"catalog-{index}.json"),
            "--pid-file", str(work / f"runner-{index}.json"),
            *(["--only", only] if only else []),
        ],
        work / f"flink-{index}.log",
        # The topic is preloaded: with the default 3 s idle timeout a partition whose records
        # wait behind another's (back-pressure at start) is declared idle, the watermark
        # moves on without it, and its first minutes are dropped as late. Every partition
        # ends with a closing trade here, so idleness is never needed to finish.
        child_env(work, MOEX_IDLE_TIMEOUT_MS="600000"),
    )  # fmt: skip
    sampler = Sampler({"flink": proc.pid}, every_s=1.0).start()
    sampler.mark("launch")
    profiler = VertexProfiler()
    job_start = None
    try:
        while not counter.done.wait(1.0):
            if not proc.alive():
                raise RuntimeError(f"the Flink peer job exited:\n{proc.tail()}")
            if counter.stalled():
                say(f"peer: Flink stalled at {counter.counts} of {expected} rows each")
                break
            try:
                if job_start is None:
                    job_start, job_id = job_start_time(rest_port)
                elif running_job(rest_port) is not None:
                    profiler.add(vertex_load(rest_port, job_id))
            except Exception:
                pass
        if job_start is None:  # it finished within the first poll
            try:
                job_start, _ = job_start_time(rest_port)
            except Exception:
                pass
        sampler.mark("done")
    finally:
        sampler.stop()
        counter.stop()
        proc.stop()
    return _timing("flink", counter, launched, job_start, sampler) | {"profile": profiler.top(4)}


def quix_run(work: Path, bootstrap: str, python: Path, expected: int, index: int) -> dict:
    counter = OutputCounter(bootstrap, "quix.candles_1m", "quix.ema_12_1m", expected)
    counter.start()
    launched = time.time()
    proc = Proc(
        "quix-peer",
        [
            str(python), str(QUIX_SCRIPT), "--bootstrap", bootstrap, "--input", "peer.trades",
            "--candles", "quix.candles_1m", "--ema", "quix.ema_12_1m",
            "--group", f"peer-quix-{index}", "--state-dir", str(work / f"quix-state-{index}"),
            "--commit-interval", str(COMMIT_S),
        ],
        work / f"quix-{index}.log",
        child_env(work),
    )  # fmt: skip
    sampler = Sampler({"quix": proc.pid}, every_s=1.0).start()
    sampler.mark("launch")
    try:
        while not counter.done.wait(1.0):
            if not proc.alive():
                raise RuntimeError(f"the Quix peer job exited:\n{proc.tail()}")
            if counter.stalled():
                say(f"peer: Quix stalled at {counter.counts} of {expected} rows each")
                break
        sampler.mark("done")
    finally:
        sampler.stop()
        counter.stop()
        proc.stop()
    app_start = None
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"event": "running"'):
            app_start = json.loads(line)["wall"]
    return _timing("quix", counter, launched, app_start, sampler)


def _timing(
    name: str, counter: OutputCounter, launched: float, started: float | None, sampler: Sampler
) -> dict:
    last = counter.last_arrival or time.time()
    cpu = sampler.cpu_last.get(name, (0, 0.0))[1] - sampler.cpu_first.get(name, (0, 0.0))[1]
    return {
        "engine": name,
        "complete": counter.done.is_set(),
        "rows": dict(counter.counts),
        "total_s": round(last - launched, 2),
        "excluding_start_s": round(last - started, 2) if started else None,
        "start_s": round(started - launched, 2) if started else None,
        "first_row_after_s": round(counter.first_arrival - launched, 2)
        if counter.first_arrival
        else None,
        "cpu_s": round(cpu, 1),
        "peak_rss_mb": round(sampler.peak_rss.get(name, 0.0), 1),
        "ema": counter.ema_values,
    }


def compare_ema(flink: dict, quix: dict) -> dict:
    common = set(flink) & set(quix)
    worst = 0.0
    null_mismatch = 0
    for key in common:
        a, b = flink[key], quix[key]
        if (a is None) != (b is None):
            null_mismatch += 1
        elif a is not None:
            worst = max(worst, abs(a - b) / max(abs(a), 1e-12))
    return {
        "rows_compared": len(common),
        "only_flink": len(set(flink) - set(quix)),
        "only_quix": len(set(quix) - set(flink)),
        "null_mismatch": null_mismatch,
        "max_relative_difference": worst,
    }


def run(quick: bool, repeat: int, keep: bool = False) -> Result:
    result = Result("peer")
    events = 20_000 if quick else 500_000
    python = bench_python(create=True)
    if python is None:
        raise RuntimeError("no .cache/bench-venv with quixstreams: its pip install failed")
    flink_runs, quix_runs = [], []
    with workspace("peer", keep) as work, kafka_broker(work) as broker:
        bootstrap = broker.bootstrap
        say(f"peer: preparing {events:,} trades")
        trades_file, trades, expected = prepare_input(work, events)
        create_extra_topics(
            bootstrap,
            ["peer.trades", "peer.candles_1m", "peer.ema_12_1m", "quix.candles_1m",
             "quix.ema_12_1m"],
        )  # fmt: skip
        loader = Proc(
            "load",
            [str(python), str(LOADGEN), "load", "--bootstrap", bootstrap,
             f"peer.trades={trades_file}"],
            work / "load.log",
            child_env(work),
        )  # fmt: skip
        if loader.wait(300) != 0:
            raise RuntimeError(f"loading peer.trades failed:\n{loader.tail()}")
        say(f"peer: {trades:,} trades loaded; expecting {expected} candles and EMA rows each")
        for index in range(repeat):
            say(f"peer: Flink run {index + 1}/{repeat}")
            flink_runs.append(flink_run(work, bootstrap, expected, index))
            say(f"peer: Flink {flink_runs[-1]['total_s']} s "
                f"({flink_runs[-1]['excluding_start_s']} s after job start)")  # fmt: skip
            say(f"peer: Quix run {index + 1}/{repeat}")
            quix_runs.append(quix_run(work, bootstrap, python, expected, index))
            say(f"peer: Quix {quix_runs[-1]['total_s']} s "
                f"({quix_runs[-1]['excluding_start_s']} s after app.run())")  # fmt: skip
        # Where the Flink job's time goes: the same SQL without the EMA's pandas UDAF.
        candles_only = None
        if not quick:
            say("peer: Flink run with candles_1m only (no Python UDAF)")
            candles_only = flink_run(work, bootstrap, expected, "candles", only="candles_1m")
            candles_only.pop("ema")
            say(f"peer: Flink candles only {candles_only['total_s']} s "
                f"({candles_only['excluding_start_s']} s after job start)")  # fmt: skip
    check = compare_ema(flink_runs[-1]["ema"], quix_runs[-1]["ema"])
    for r in flink_runs + quix_runs:
        r.pop("ema")

    def rate(runs: list[dict], key: str) -> float | None:
        return median(round(trades / r[key]) for r in runs if r.get(key) and r["complete"])

    for r in flink_runs + quix_runs:
        if not r["complete"]:
            result.notes.append(
                f"{r['engine']} run incomplete: {r['rows']} of {expected} rows per output"
            )

    flink_net, quix_net = (
        rate(flink_runs, "excluding_start_s"),
        rate(quix_runs, "excluding_start_s"),
    )
    flink_all, quix_all = rate(flink_runs, "total_s"), rate(quix_runs, "total_s")
    ratio_net = round(flink_net / quix_net, 2) if flink_net and quix_net else None
    ratio_all = round(flink_all / quix_all, 2) if flink_all and quix_all else None
    result.row(
        "Flink / Quix throughput, including start",
        ratio_all,
        "x",
        target=">= 3x incl. start",
        met=ratio_all is not None and ratio_all >= 3,
    )
    result.row("Flink / Quix throughput, excluding start", ratio_net, "x")
    result.row(
        "Flink: trades/s excl. / incl. start",
        f"{flink_net:,.0f} / {flink_all:,.0f}" if flink_net and flink_all else None,
        "trades/s",
        runs=[(r["excluding_start_s"], r["total_s"]) for r in flink_runs],
    )
    result.row(
        "Quix: trades/s excl. / incl. start",
        f"{quix_net:,.0f} / {quix_all:,.0f}" if quix_net and quix_all else None,
        "trades/s",
        runs=[(r["excluding_start_s"], r["total_s"]) for r in quix_runs],
    )
    if candles_only is not None:
        only_net = rate([candles_only], "excluding_start_s")
        only_all = rate([candles_only], "total_s")
        result.row(
            "Flink without the EMA UDAF (candles_1m only) / Quix, excl. / incl. start",
            f"{round(only_net / quix_net, 2)} / {round(only_all / quix_all, 2)}"
            if only_net and quix_net and only_all and quix_all
            else None,
            "x",
            runs=[(candles_only["excluding_start_s"], candles_only["total_s"])],
        )
    result.row(
        "first output row after start: Flink / Quix",
        f"{median(r['first_row_after_s'] for r in flink_runs)} / "
        f"{median(r['first_row_after_s'] for r in quix_runs)}",
        "s",
    )
    result.row(
        "CPU seconds: Flink / Quix",
        f"{median(r['cpu_s'] for r in flink_runs)} / {median(r['cpu_s'] for r in quix_runs)}",
        "s",
    )
    result.row(
        "EMA(12) check: rows compared, max relative difference",
        f"{check['rows_compared']}, {check['max_relative_difference']:.1e}",
        "",
    )
    result.details = {
        "params": {
            "trades": trades,
            "expected_rows_per_output": expected,
            "commit_interval_s": COMMIT_S,
            "quix": "quixstreams==3.28.1, processing_guarantee=exactly-once",
            "flink": "python -m runner run --sql-dir benchmarks/sql_peer --topic-prefix peer.",
        },
        "flink_runs": flink_runs,
        "quix_runs": quix_runs,
        "flink_candles_only_run": candles_only,
        "ema_check": check,
    }
    return result
