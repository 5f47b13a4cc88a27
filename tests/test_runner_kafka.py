"""The live job end to end on the session's real broker: trades in, exactly-once candles out
(read with read_committed), a spike alert on the at-least-once `_live` twin, and `reload`
(a broken edit leaves the job alone; a valid one resubmits it from a savepoint).

Isolated from other tests by its own topic prefix, consumer group and transactional-id prefix.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.job_health import JobHealth
from moex.paths import ROOT, SQL_DIR
from runner.flink_rest import NOT_RUNNING, job_state, runner_job_health
from runner.reload import reload
from runner.settings import Settings
from stack.kafka import free_port
from stack.topics import temporary_topics
from tests.environ import clean_environ
from tests.examples import obv
from tests.golden import oracle
from tests.golden.compare import differences

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

T0 = 1764140400000
OUTPUTS = ("candles_1s", "anomalies", "anomalies_live")
SUBSET = [
    "00_sources/trades.sql",
    "00_sources/orderbook.sql",
    "00_sources/market_status.sql",
    "10_views/bars.sql",
    "20_candles/candles_1s.sql",
    "20_candles/candles_1m.sql",  # bars_1m keeps every column, as in the full sql/
    "60_anomalies/anomalies.sql",
]


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    name = f"it{uuid.uuid4().hex[:8]}."
    kinds = ("trades", "orderbook", "market_status", *OUTPUTS)
    with temporary_topics(kafka_bootstrap, {f"{name}{kind}": 3 for kind in kinds}):
        yield name


def trades() -> list[dict]:
    rows = []
    for second in range(40):
        price = 100.0 if second < 20 else 103.0  # +3 % at 07:00:20: a spike
        trade_id = 1000 + second
        rows.append(
            {
                "event_id": f"SBER:T:{trade_id}",
                "ticker": "SBER",
                "board": "TQBR",
                "trade_id": trade_id,
                "ts": T0 + second * 1000 + 250,
                "price": price,
                "qty": 1 + second % 5,
                "side": "B",
            }
        )
    # A later trade moves the watermark (1 s behind) past 07:00:40: every second above closes.
    rows.append({**rows[-1], "event_id": "SBER:T:2000", "trade_id": 2000, "ts": T0 + 45_000})
    return rows


def read(bootstrap: str, topic: str, until, timeout_s: float = 90.0) -> list[tuple[bytes, dict]]:
    """Poll a topic read_committed until `until(records)` holds or the deadline passes."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    records: list[tuple[bytes, dict]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(records):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    records.append((record.key, json.loads(record.value, parse_float=Decimal)))
    finally:
        consumer.close()
    return records


def produce(bootstrap: str, topic: str, rows: list[dict]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for row in rows:
        producer.send(topic, key=row["ticker"].encode(), value=json.dumps(row).encode())
    producer.flush()
    producer.close()


def later_trade(offset_ms: int) -> dict:
    trade_id = 5000 + offset_ms // 100
    return {
        "event_id": f"SBER:T:{trade_id}", "ticker": "SBER", "board": "TQBR",
        "trade_id": trade_id, "ts": T0 + offset_ms, "price": 103.5, "qty": 1, "side": "B",
    }  # fmt: skip


def test_live_job_when_trades_arrive_then_exactly_once_candles_a_live_alert_and_reloads(
    kafka_bootstrap: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = trades()
    produce(kafka_bootstrap, f"{prefix}trades", rows)
    # The files the two outputs need, and nothing else: a reload below adds files to this
    # folder, and the runner runs every output of its folder.
    sql_dir = tmp_path / "sql"
    for name in SUBSET:
        (sql_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SQL_DIR / name, sql_dir / name)
    pid_file = tmp_path / "runner.json"
    rest_port = free_port()

    run_id = prefix.rstrip(".")
    command = [
        sys.executable, "-m", "runner", "run",
        "--bootstrap", kafka_bootstrap,
        "--topic-prefix", prefix,
        "--txn-prefix", run_id,
        "--group-id", run_id,
        "--fresh",
        "--checkpoint-dir", str(tmp_path / "checkpoints"),
        "--checkpoint-ms", "1000",
        "--rest-port", str(rest_port),
        "--catalog", str(tmp_path / "catalog.json"),
        "--sql-dir", str(sql_dir),
        "--pid-file", str(pid_file),
    ]  # fmt: skip
    log = (tmp_path / "runner.log").open("w")
    job = subprocess.Popen(
        command,
        cwd=ROOT,
        # One ticker: two of the three partitions never get a record. A short idle timeout lets
        # the windows close without them (the 60 s default is for staggered resumption, see
        # test_faults_idle.py).
        env={**clean_environ(), "PYTHONPATH": str(ROOT), "MOEX_IDLE_TIMEOUT_MS": "2000"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        expected = oracle.candles(oracle.valid_trades(rows), 1000)[:-1]  # all but 07:00:45
        # The deadline covers the job's start (planning, Python workers) on a loaded machine.
        candles = read(
            kafka_bootstrap,
            f"{prefix}candles_1s",
            lambda r: len(r) >= len(expected),
            timeout_s=300,
        )
        assert job.poll() is None, (tmp_path / "runner.log").read_text()[-3000:]
        assert {key for key, _ in candles} == {b"SBER"}, "records are keyed by ticker"
        problems = differences(
            [{k: str(v) if isinstance(v, Decimal) else v for k, v in e.items()} for e in expected],
            [value for _, value in candles],
            ["ticker", "window_end"],
        )
        assert not problems, "\n".join(problems[:10])

        def has_spike(records: list) -> bool:
            return any(value.get("kind") == "spike_up" for _, value in records)

        live = read(kafka_bootstrap, f"{prefix}anomalies_live", has_spike, timeout_s=30)
        assert has_spike(live), "no spike on the _live twin"
        spike = next(v for _, v in live if v["kind"] == "spike_up")
        # The jump's 100-ms bar starts at 07:00:20.200; the earliest bar less than 10 s before
        # it is 07:00:11.200 (trades fall at .250 of every second).
        assert spike["event_id"] == f"SBER:spike_up:{T0 + 11_200}"
        committed = read(kafka_bootstrap, f"{prefix}anomalies", has_spike, timeout_s=30)
        assert [v for _, v in committed if v["kind"] == "spike_up"] == [spike]

        catalog = json.loads((tmp_path / "catalog.json").read_text())
        entry = {o["name"]: o for o in catalog["outputs"]}["anomalies"]
        assert entry["live_topic"] == f"{prefix}anomalies_live"
        assert entry["dedup_key"] == "event_id"
        assert {"name": "start_ts", "type": "TIMESTAMP_LTZ(3)"} in entry["columns"]

        # Its health, as `make status` and the gateway's /healthz show it.
        healthy = {"state": "RUNNING", "restarts": 0, "last_exception": None}
        # (generous timeouts: REST answers slowly on a loaded machine)
        assert runner_job_health(pid_file, timeout=15) == healthy
        assert asyncio.run(JobHealth(pid_file, None, timeout_s=15).get()) == healthy

        # Reload with a broken file: reported, and the job keeps running untouched.
        settings = Settings()
        settings.pid_file = pid_file
        first_job = json.loads(pid_file.read_text())["job_id"]
        candles_sql = sql_dir / "20_candles" / "candles_1s.sql"
        good = candles_sql.read_text()
        candles_sql.write_text(good.replace("SELECT ticker, bar_start", "SELECT tickr, bar_start"))
        assert reload(settings) == 2
        assert json.loads(pid_file.read_text())["job_id"] == first_job
        assert job_state(rest_port, first_job) == "RUNNING"

        # A file whose topic the broker refuses (longer than Kafka's 249 characters): reported
        # at its `-- topic:` line before anything is stopped; the old job runs on and produces.
        candles_sql.write_text(good)
        stem = "obv_" + "x" * (249 - len(prefix) - 3)
        bad = obv.write(sql_dir, name=stem)
        capsys.readouterr()
        assert reload(settings) == 2
        err = capsys.readouterr().err
        assert f"{bad}:3:1: topic {prefix}{stem} cannot be created: Topic name is invalid" in err
        assert json.loads(pid_file.read_text())["job_id"] == first_job
        assert job_state(rest_port, first_job) == "RUNNING"
        # A trade at 07:00:47.1 closes the 07:00:45 candle: the old job still writes.
        produce(kafka_bootstrap, f"{prefix}trades", [later_trade(47_100)])
        read(
            kafka_bootstrap,
            f"{prefix}candles_1s",
            lambda r: any(v["window_end"] == "2025-11-26T07:00:46Z" for _, v in r),
        )
        assert job_state(rest_port, first_job) == "RUNNING"
        bad.unlink()

        # The worked example of docs/flink-job.md: the SQL file, its golden case, reload. And a
        # valid edit of candles_1s that keeps its operator graph: its state is restored.
        obv.write(sql_dir)
        obv.write_golden(tmp_path / "golden")
        candles_sql.write_text(good.replace("-- grain:", "-- (reloaded)\n-- grain:", 1))
        assert reload(settings) == 0
        out = capsys.readouterr().out
        report = {
            key: value
            for key, _, value in (line.removeprefix("runner: ").partition(": ") for line in
                                  out.splitlines())
        }  # fmt: skip
        assert "candles_1s" in report["restores from the savepoint"].split(", "), out
        assert "obv_1m" in report["starts fresh (new or changed operators)"].split(", "), out
        assert f"runner: created topics {prefix}obv_1m" in out, out
        assert "old outputs paused" in out and "reload took" in out, out
        second_job = json.loads(pid_file.read_text())["job_id"]
        assert second_job != first_job
        later = [
            {**rows[0], "event_id": f"SBER:T:{3000 + s}", "trade_id": 3000 + s,
             "ts": T0 + s * 1000 + 100, "price": 103.5}
            for s in (47, 48, 60)
        ]  # fmt: skip
        produce(kafka_bootstrap, f"{prefix}trades", later)
        # 07:00:47 was open in the window state at the savepoint (the trade at 47.1): it comes
        # out once, with both trades.
        wanted = {"2025-11-26T07:00:46Z", "2025-11-26T07:00:49Z"}
        all_candles = read(
            kafka_bootstrap,
            f"{prefix}candles_1s",
            lambda r: wanted <= {v["window_end"] for _, v in r},
        )
        ends = [v["window_end"] for _, v in all_candles]
        assert wanted <= set(ends)
        assert len(ends) == len(set(ends)), "a candle was written twice across the reload"
        assert len(ends) == len(expected) + 3  # 45, 47, 48
        restored = next(v for _, v in all_candles if v["window_end"] == "2025-11-26T07:00:48Z")
        assert restored["volume"] == 2, restored

        # The new output's rows: a trade two minutes on closes the 07:00 and 07:01 candles.
        produce(kafka_bootstrap, f"{prefix}trades", [later_trade(125_000)])

        def minute_two(records: list) -> bool:
            return any(v["window_end"] == "2025-11-26T07:02:00Z" for _, v in records)

        rows = read(kafka_bootstrap, f"{prefix}obv_1m", minute_two)
        assert minute_two(rows), rows
        assert all(isinstance(v["obv"], int) and key == b"SBER" for key, v in rows), rows
    finally:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(timeout=30)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()
        log.close()


def test_job_health_when_no_runner_then_not_running(tmp_path: Path) -> None:
    assert runner_job_health(tmp_path / "runner.json") == NOT_RUNNING
    # A pid file left by a runner that is gone: its REST port no longer answers.
    (tmp_path / "runner.json").write_text(
        json.dumps({"job_id": "0" * 32, "rest_port": free_port()})
    )
    assert runner_job_health(tmp_path / "runner.json") == NOT_RUNNING
