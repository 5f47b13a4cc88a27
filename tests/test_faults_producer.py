"""At-least-once input, exactly-once counting: the producer is SIGKILLed mid-way through a file
and the file is replayed again from the start, so the first part reaches Kafka twice (and the
records the killed producer had not yet delivered, once). The job's event_id de-duplication must
count every trade once: the candles equal the file's, to the lot.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults_support import (
    Group,
    RunnerJob,
    TopicTail,
    artifacts_on_failure,
    compare,
    create_prefixed_topics,
    delete_topics,
    end_ms,
    end_offsets,
    new_prefix,
    qty_by_ticker,
    synthetic_session,
    volume_by_ticker,
    wait_for,
)
from tests.golden import oracle

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

TRADES = 8000
PUBLISH_RATE = 1500  # records a second for the first run: the kill lands well inside it


def test_producer_when_killed_and_the_file_replayed_from_the_start_then_every_trade_counts_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    session = synthetic_session(tmp_path / "input", seed=23, trades=TRADES)
    trades = session.trades()
    real = [t for t in trades if t["ts"] < session.sentinel_ts]
    expected_volume = qty_by_ticker(real)
    expected_candles = oracle.candles(oracle.valid_trades(real), 60_000)
    prefix = new_prefix("prod")
    topics = create_prefixed_topics(kafka_bootstrap, prefix)
    job = RunnerJob(kafka_bootstrap, prefix, tmp_path / "job", only=("candles_1m",))

    def producer(name: str, *pace: str) -> Group:
        command = [
            sys.executable, "-m", "producer", "replay", str(session.folder),
            "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--stats-every", "0",
            *pace,
        ]  # fmt: skip
        return Group(command, tmp_path / f"{name}.log")

    first = producer("producer-1", "--rate", str(PUBLISH_RATE))
    second = producer("producer-2", "--speed", "0")
    candles: TopicTail | None = None
    try:
        with artifacts_on_failure(tmp_path, "producer"):
            job.start()
            job.wait_running()  # the job reads the first run live, then the replay's copies
            first.start()

            def published() -> int:
                count = sum(end_offsets(kafka_bootstrap, f"{prefix}trades", False).values())
                return count if count >= len(trades) // 3 else 0

            wait_for(published, 120, "a third of the trades in Kafka")
            first.kill()
            delivered_before_crash = sum(
                end_offsets(kafka_bootstrap, f"{prefix}trades", False).values()
            )
            assert delivered_before_crash < len(trades), "the first run was not cut short"
            second.start()
            assert second.wait(120) == 0, second.log()
            in_topic = sum(end_offsets(kafka_bootstrap, f"{prefix}trades", False).values())
            assert in_topic == delivered_before_crash + len(trades), (in_topic, len(trades))

            candles = TopicTail(kafka_bootstrap, f"{prefix}candles_1m")

            def closed_rows() -> list[dict]:
                return [r for r in candles.rows() if end_ms(r) <= session.sentinel_ts]

            def counted() -> bool:
                assert job.current.running(), job.logs()
                candles.poll(200)
                return volume_by_ticker(closed_rows()) >= expected_volume

            try:
                wait_for(counted, 240, "candles_1m to account for every lot of the file")
            except AssertionError as exc:
                got = volume_by_ticker(closed_rows())
                raise AssertionError(
                    f"{exc}\nexpected {expected_volume}\ngot {got}\n{job.diagnosis()}"
                ) from None
            # Anything a later transaction holds (a double count) is committed by then.
            job.wait_checkpoint_after(job.wait_checkpoint_after(job.latest_checkpoint_id()))
            candles.drain()
            rows = closed_rows()
            volume = volume_by_ticker(rows)
            assert volume == expected_volume, (
                f"lots per ticker: {volume} != {expected_volume}\n{job.diagnosis()}"
            )
            trade_counts = Counter()
            for row in rows:
                trade_counts[row["ticker"]] += int(row["trades"])
            assert trade_counts == Counter(t["ticker"] for t in real)
            result = compare("candles_1m", expected_candles, rows, ["ticker", "window_end"])
            assert result.ok, f"{result.summary()}\n{job.diagnosis()}"
            print(
                f"\nfirst run killed after {delivered_before_crash} of {len(trades)} trades; "
                f"topic holds {in_topic}; {len(rows)} candles equal the file's; "
                f"{time.monotonic() - started:.0f} s"
            )
    finally:
        if candles is not None:
            candles.close()
        first.stop()
        second.stop()
        job.stop()
        delete_topics(kafka_bootstrap, topics)
