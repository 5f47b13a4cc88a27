"""The live job end to end on the session's real broker: trades in, exactly-once candles out
(read with read_committed), a spike alert on the at-least-once `_live` twin, and `reload`
(a broken edit leaves the job alone; a valid one resubmits it from a savepoint).

Isolated from other tests by its own topic prefix, consumer group and transactional-id prefix.
"""

from __future__ import annotations

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

from runner.reload import job_state, reload
from runner.settings import Settings
from stack.kafka import free_port
from stack.paths import ROOT, SQL_DIR
from tests.environ import clean_environ
from tests.golden import oracle
from tests.golden.compare import differences

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

T0 = 1764140400000
OUTPUTS = ("candles_1s", "anomalies", "anomalies_live")


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"it{uuid.uuid4().hex[:8]}."
    topics = [f"{name}{t}" for t in ("trades", "orderbook", "market_status", *OUTPUTS)]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(t, 3, 1) for t in topics])
    try:
        yield name
    finally:
        admin.delete_topics(topics)
        admin.close()


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


def test_live_job_when_trades_arrive_then_exactly_once_candles_a_live_alert_and_reloads(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    rows = trades()
    produce(kafka_bootstrap, f"{prefix}trades", rows)
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    pid_file = tmp_path / "runner.json"
    rest_port = free_port()

    run_id = prefix.rstrip(".")
    command = [
        sys.executable, "-m", "runner", "run",
        "--bootstrap", kafka_bootstrap,
        "--topic-prefix", prefix,
        "--txn-prefix", run_id,
        "--group-id", run_id,
        "--only", "candles_1s,anomalies",
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
        candles = read(kafka_bootstrap, f"{prefix}candles_1s", lambda r: len(r) >= len(expected))
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

        # A valid edit that keeps the operator graph: savepoint, resubmit, state restored.
        candles_sql.write_text(good.replace("-- grain:", "-- (reloaded)\n-- grain:", 1))
        assert reload(settings) == 0
        second_job = json.loads(pid_file.read_text())["job_id"]
        assert second_job != first_job
        later = [
            {**rows[0], "event_id": f"SBER:T:{3000 + s}", "trade_id": 3000 + s,
             "ts": T0 + s * 1000 + 100, "price": 103.5}
            for s in (46, 47, 48, 60)
        ]  # fmt: skip
        produce(kafka_bootstrap, f"{prefix}trades", later)
        # 07:00:45 was open in the window state at the savepoint: it must come out once.
        wanted = {"2025-11-26T07:00:46Z", "2025-11-26T07:00:49Z"}
        all_candles = read(
            kafka_bootstrap,
            f"{prefix}candles_1s",
            lambda r: wanted <= {v["window_end"] for _, v in r},
        )
        ends = [v["window_end"] for _, v in all_candles]
        assert wanted <= set(ends)
        assert len(ends) == len(set(ends)), "a candle was written twice across the reload"
        assert len(ends) == len(expected) + 4  # 45, 46, 47, 48
    finally:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(timeout=30)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()
        log.close()
