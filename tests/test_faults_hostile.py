"""Hostile input written straight into the job's source topics, past the producer's validation:
malformed JSON, JSON that is not an object, wrong-typed fields, tombstones, bytes that are not
UTF-8, a 100,000-deep nesting, a 500 KB record. The job must neither fail over nor stall, the
good records' candles and liquidity rows must be complete and exact, and every hostile record
must be accounted for in input_rejects (a gap of unreadable offsets, or a row with its reason).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults_support import (
    Feeder,
    RunnerJob,
    TopicTail,
    artifacts_on_failure,
    compare,
    create_prefixed_topics,
    delete_topics,
    end_ms,
    expected_candles_and_liquidity,
    merged_input,
    new_prefix,
    synthetic_session,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

TRADES = 4000
FEED_RATE = 250  # records a second: the feed runs on while the job starts and reads it
TS = 1795709100000  # inside the session: a record the job accepted here would show in a candle


def hostile_trades() -> list[bytes | None]:
    good = (
        b'"event_id":"SBER:T:1","ticker":"SBER","board":"TQBR","trade_id":1,"ts":%d,"side":"B"' % TS
    )
    return [
        b"not json at all",
        b'{"event_id":"SBER:T:1","ticker":"SBER"',  # cut short
        b"[1, 2, 3]",
        b"null",
        b"42",
        b'"a string"',
        b"",
        None,  # a tombstone
        b"\xff\xfe\x00\x80 not utf-8",
        b'{"event_id":"SBER:T:2","ticker":"SBER","trade_id":"two","ts":"yesterday",'
        b'"price":"abc","qty":"ten","side":"B"}',
        b'{"event_id":"SBER:T:3","ticker":"SBER","trade_id":3,"ts":{"nested":true},'
        b'"price":[1],"qty":{},"side":5}',
        b"{" + good + b',"price":NaN,"qty":1}',
        b"{" + good + b',"price":"Infinity","qty":1}',
        b"{" + good + b',"price":1e400,"qty":1}',  # beyond DECIMAL(18, 6)
        b"{" + good + b',"price":100.5,"qty":1.5e300}',  # beyond BIGINT
        b"{" + good + b',"price":-100.5,"qty":-3}',
        b'{"event_id":null,"ticker":null,"ts":null}',
        b"{}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"pad":"' + b"x" * 500_000 + b'"}',
        b'{"event_id":"SBER:T:4","ticker":"SBER","ts":%d,"price":100.5}' % TS,  # no qty
    ]


def hostile_books() -> list[bytes | None]:
    return [
        b"not json at all",
        b'{"event_id":"SBER:B:1","ticker":"SBER","ts":%d,"seq":1,"bids":"many",'
        b'"asks":[[1,2,3,4]]}' % TS,
        b'{"event_id":"SBER:B:2","ticker":"SBER","ts":%d,"seq":"two","bids":[["a","b"]],'
        b'"asks":[{}]}' % TS,
        b'{"event_id":"SBER:B:3","ticker":"SBER","ts":"now","seq":3,"bids":[],"asks":[]}',
        None,
        b"[" * 100_000 + b"]" * 100_000,
    ]


def test_job_when_malformed_and_wrong_typed_records_arrive_then_it_keeps_running_and_counts_the_good_ones(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    session = synthetic_session(tmp_path / "input", seed=31, trades=TRADES)
    expected = expected_candles_and_liquidity(session)
    prefix = new_prefix("bad")
    topics = create_prefixed_topics(kafka_bootstrap, prefix)
    job = RunnerJob(kafka_bootstrap, prefix, tmp_path / "job", only=(*expected, "input_rejects"))
    records = merged_input(session)
    # Hostile records on every partition of both inputs, at a third and at two thirds of the feed.
    hostile = [
        (kind, b"SBER", value, partition)
        for kind, values in (("trades", hostile_trades()), ("orderbook", hostile_books()))
        for value in values
        for partition in range(3)
    ]
    feeder = Feeder(
        kafka_bootstrap,
        prefix,
        records,
        rate=FEED_RATE,
        inserts={len(records) // 3: hostile, 2 * len(records) // 3: hostile},
    )
    tails: dict[str, TopicTail] = {}
    try:
        with artifacts_on_failure(tmp_path, "hostile"):
            # The feed starts with the job and runs on while it reads: a steady stream, so no
            # partition goes idle (see test_faults_idle.py for what a pause does).
            feeder.start()
            job.start()
            job.wait_running()
            feeder.wait_done(240)
            for name in (*expected, "input_rejects"):
                tails[name] = TopicTail(kafka_bootstrap, f"{prefix}{name}")
            inserted = len(feeder.inserts)  # each hostile list goes in this many times
            want_rejects = Counter(
                {
                    (kind, partition): inserted * len(values)
                    for kind, values in (
                        ("trades", hostile_trades()),
                        ("orderbook", hostile_books()),
                    )
                    for partition in range(3)
                }
            )

            def rejected() -> Counter:
                """Hostile records accounted for per (topic, partition): gaps and single rows."""
                got: Counter = Counter()
                for row in tails["input_rejects"].rows():
                    got[(row["input"], row["kafka_partition"])] += row["records"]
                return got

            def closed(name: str) -> list[dict]:
                return [r for r in tails[name].rows() if end_ms(r) <= session.sentinel_ts]

            def complete() -> bool:
                assert job.current.running(), job.logs()
                for tail in tails.values():
                    tail.poll(200)
                return (
                    all(len(closed(n)) >= len(rows) for n, rows in expected.items())
                    and rejected() == want_rejects
                )

            try:
                wait_for(complete, 180, "the good records' candles and liquidity rows")
            except AssertionError as exc:
                got = {n: len(closed(n)) for n in expected}
                want = {n: len(rows) for n, rows in expected.items()}
                raise AssertionError(
                    f"{exc}: rows {got} of {want}; rejects {dict(rejected())} of "
                    f"{dict(want_rejects)}\n{job.diagnosis()}\n{job.logs()}"
                ) from None
            assert job.state() == "RUNNING"
            failovers = job.failovers()
            assert not failovers, [f.get("exceptionName") for f in failovers]
            job.wait_checkpoint_after(job.latest_checkpoint_id())  # checkpoints still complete
            for name, rows in expected.items():
                tails[name].drain()
                result = compare(name, rows, closed(name), ["ticker", "window_end"])
                assert result.ok, f"{result.summary()}\n{job.diagnosis()}"
            tails["input_rejects"].drain()
            assert rejected() == want_rejects, (dict(rejected()), dict(want_rejects))
            reasons = Counter(row["reason"] for row in tails["input_rejects"].rows())
            print(
                f"\n{2 * len(hostile)} hostile records, all in input_rejects {dict(reasons)}; "
                f"{len(expected['candles_1m'])} candles and {len(expected['liquidity_1s'])} "
                f"liquidity rows exact; {time.monotonic() - started:.0f} s"
            )
    finally:
        for tail in tails.values():
            tail.close()
        feeder.close()
        job.stop()
        delete_topics(kafka_bootstrap, topics)
