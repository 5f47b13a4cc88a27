"""The producer against the session's real Kafka broker: what goes in comes out, rejects land
in the DLQ, an unreachable broker fails fast, SIGTERM flushes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from producer.cli import main
from stack.kafka import free_port
from stack.topics import temporary_topics
from tests.environ import clean_environ

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "iss"
KINDS = ("trades", "orderbook", "market_status", "dlq")


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """Four fresh topics `test.<id>.{trades,orderbook,market_status,dlq}` for one test."""
    name = f"test.{uuid.uuid4().hex[:10]}."
    partitions = {f"{name}{kind}": 1 if kind == "dlq" else 3 for kind in KINDS}
    with temporary_topics(kafka_bootstrap, partitions):
        yield name


def read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list:
    """Every record of `topic` up to its end offsets (no consumer group, from the start)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while not partitions:
            assert time.monotonic() < deadline, f"no metadata for {topic}"
            partitions = consumer.partitions_for_topic(topic)
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        records = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic}: read {len(records)} records"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def per_ticker(values: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for value in values:
        grouped.setdefault(json.loads(value)["ticker"], []).append(value)
    return grouped


def test_synthetic_when_sent_to_kafka_then_consumed_records_equal_generated(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    argv = ["synthetic", "--seed", "21", "--max-events", "4000", "--anomaly-rate", "2"]
    argv += ["--rate", "0", "--stats-every", "0"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert main([*argv, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix]) == 0

    for kind in ("trades", "orderbook", "market_status"):
        expected = (tmp_path / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines()
        records = read_topic(kafka_bootstrap, prefix + kind)
        consumed = [r.value.decode("utf-8") for r in records]
        assert len(consumed) == len(expected), kind
        # Keys are tickers, so each ticker's records keep their order within one partition.
        assert per_ticker(consumed) == per_ticker(expected), kind
        assert all(r.key.decode() == json.loads(r.value)["ticker"] for r in records)
    assert len(expected) >= 1 and read_topic(kafka_bootstrap, prefix + "dlq") == []


def test_replay_when_bad_records_then_each_in_dlq_with_reason_and_good_ones_delivered(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    ts = 1_795_676_400_000
    good = {"ticker": "SBER", "board": "TQBR", "ts": ts, "price": 285.43, "qty": 10, "side": "B"}

    def trade(n: int, **changes: object) -> str:
        obj = {"event_id": f"SBER:T:{n}", **good, "trade_id": n, **changes}
        return json.dumps({k: v for k, v in obj.items() if v is not ...})

    book = {"event_id": "SBER:B:9", "ticker": "SBER", "ts": ts, "seq": 9}
    lines = [
        trade(1),
        '{"ticker": "SBER", "price": 285.',  # bad JSON
        trade(2, ticker="NOPE", event_id="NOPE:T:2"),  # unknown ticker
        trade(3, price=285.437),  # off the tick grid
        trade(4, qty=-10),  # negative qty
        trade(5, side=...),  # missing field
        json.dumps({**book, "bids": [[285.45, 1]], "asks": [[285.44, 1]]}),  # crossed book
        trade(6, ts=32_503_680_000_000),  # absurd ts: year 3000
        trade(7),
    ]
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["replay", str(source), "--speed", "0", "--stats-every", "0"]
    assert main([*argv, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix]) == 0

    trades = [json.loads(r.value) for r in read_topic(kafka_bootstrap, prefix + "trades")]
    assert [t["trade_id"] for t in trades] == [1, 7]
    dlq = [json.loads(r.value) for r in read_topic(kafka_bootstrap, prefix + "dlq")]
    assert dlq[0]["reason"].startswith("bad JSON: Expecting")
    dlq[0]["reason"] = "bad JSON"
    assert [(d["source"], d["reason"]) for d in dlq] == [
        (f"replay:{source}:2", "bad JSON"),
        (f"replay:{source}:3", "unknown ticker 'NOPE'"),
        (f"replay:{source}:4", "price 285.437 not on tick grid 0.01"),
        (f"replay:{source}:5", "qty -10 is not positive"),
        (f"replay:{source}:6", "missing field side"),
        (f"replay:{source}:7", "crossed book: best bid 285.45 >= best ask 285.44"),
        (f"replay:{source}:8", "ts 32503680000000 is more than 1 day in the future"),
    ]
    assert [d["payload"] for d in dlq] == lines[1:8]
    assert all(abs(d["ts"] - time.time() * 1000) < 120_000 for d in dlq)
    assert read_topic(kafka_bootstrap, prefix + "orderbook") == []


def test_replay_iss_fixtures_when_sent_to_kafka_then_normalised_topics(
    kafka_bootstrap: str, prefix: str
) -> None:
    common = ["--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--stats-every", "0"]
    for name in ("sber_trades_start0.json", "sber_orderbook.json", "sber_marketdata.json"):
        assert main(["replay", str(FIXTURES / name), "--speed", "0", *common]) == 0
    trades = read_topic(kafka_bootstrap, prefix + "trades")
    assert [r.key for r in trades] == [b"SBER"] * 5
    (book,) = read_topic(kafka_bootstrap, prefix + "orderbook")
    assert json.loads(book.value)["bids"][0] == [306.52, 150]
    (status,) = read_topic(kafka_bootstrap, prefix + "market_status")
    assert status.value == (
        b'{"event_id":"SBER:S:1795590005000","ticker":"SBER","ts":1795590005000,"phase":"trading"}'
    )


def producer_process(*argv: str) -> subprocess.Popen[str]:
    env = {**clean_environ(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "producer", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_when_broker_down_then_clear_error_and_nonzero_exit_within_20s() -> None:
    closed = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    process = producer_process("synthetic", "--bootstrap", closed, "--connect-timeout", "5")
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 20
    assert process.returncode == 1
    assert f"cannot reach Kafka at {closed} within 5 s" in err


def test_cli_when_sigterm_then_flushes_and_reports_what_it_sent(
    kafka_bootstrap: str, prefix: str
) -> None:
    process = producer_process(
        "synthetic",
        "--bootstrap",
        kafka_bootstrap,
        "--topic-prefix",
        prefix,
        "--accelerate",
        "5",
        "--stats-every",
        "0.5",
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the first stat line says trades are flowing
            line = process.stderr.readline()
            assert line and time.monotonic() < deadline, "no stat line"
            if re.search(r"trades [1-9]", line):
                break
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    summary = re.search(r"done \(stopped\).*\(trades (\d+), orderbook (\d+)", err)
    assert summary, err
    trades = read_topic(kafka_bootstrap, prefix + "trades")
    assert len(trades) == int(summary.group(1)) > 0
    assert len(read_topic(kafka_bootstrap, prefix + "orderbook")) == int(summary.group(2))
