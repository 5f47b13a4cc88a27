"""A broker restart mid-stream: the producer and the job must ride it out by themselves.

The test runs its own single broker (the session's stays untouched) and stops and restarts it
(same data dir, same ports) while `python -m producer replay` is sending a paced file and
`python -m runner run` is counting it. Afterwards the trades topic holds every trade the
producer reported as acknowledged exactly once, and the job's 1-minute candles account for
every lot of every distinct trade.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from stack.kafka import KafkaBroker, free_port
from tests.faults_support import (
    Group,
    RunnerJob,
    TopicTail,
    artifacts_on_failure,
    create_prefixed_topics,
    end_ms,
    end_offsets,
    publish_lines,
    qty_by_ticker,
    read_topic,
    synthetic_session,
    volume_by_ticker,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

TRADES = 8000
PUBLISH_RATE = 500  # records a second: the feed lasts ~20 s, the restart falls inside it
OUTAGE_S = 15.0
SUMMARY = re.compile(r"producer: done \((\w[\w-]*)\) .*\(trades (\d+),")


def test_broker_when_restarted_mid_stream_then_no_acknowledged_trade_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="moex-faults-broker-"))
    broker = KafkaBroker(data_dir, free_port(), free_port(), heap_mb=384)
    session = synthetic_session(tmp_path / "input", seed=41, trades=TRADES)
    trades = session.trades()
    prefix = "brk."
    job = RunnerJob(broker.bootstrap, prefix, tmp_path / "job", only=("candles_1m",))
    producer = Group(
        [
            sys.executable,
            "-m",
            "producer",
            "replay",
            str(session.folder),
            "--bootstrap",
            broker.bootstrap,
            "--topic-prefix",
            prefix,
            "--rate",
            str(PUBLISH_RATE),
            "--stats-every",
            "1",
        ],  # fmt: skip
        tmp_path / "producer.log",
    )
    candles: TopicTail | None = None
    outage = 0.0
    try:
        with artifacts_on_failure(tmp_path, "broker"):
            broker.start()
            create_prefixed_topics(broker.bootstrap, prefix)
            job.start()
            job.wait_running()
            producer.start()

            def sending() -> int:
                count = sum(end_offsets(broker.bootstrap, f"{prefix}trades", False).values())
                return count if count >= len(trades) // 4 else 0

            before = wait_for(sending, 120, "a quarter of the trades in Kafka")
            assert job.completed_checkpoints() > 0
            down = time.monotonic()
            broker.stop()
            assert producer.running(), "the producer ended before the broker stopped"
            # A restart of a single broker (JVM start, log recovery) takes 10-20 s: the outage
            # lasts OUTAGE_S at least, whatever this machine's speed (a fault parameter, not a
            # wait for a result).
            wait_for(lambda: time.monotonic() - down >= OUTAGE_S, OUTAGE_S + 5, "the outage")
            broker.start()
            outage = time.monotonic() - down

            code = producer.wait(180)
            log = producer.log(100_000)
            summary = SUMMARY.search(log)
            producer_report = (
                f"producer exit {code} after a {outage:.1f} s outage: "
                + (summary.group(0) if summary else "no summary")
                + "".join(f"\n  {line}" for line in log.splitlines() if "producer: error" in line)
            )
            records = read_topic(broker.bootstrap, f"{prefix}trades", committed=False)
            copies = Counter(record.json()["event_id"] for record in records)
            doubled = {event_id: n for event_id, n in copies.items() if n > 1}
            missing = {t["event_id"] for t in trades} - set(copies)
            topic_report = (
                f"trades topic: {len(copies)} distinct of {len(trades)} in the file, "
                f"{len(doubled)} written more than once (e.g. {list(doubled)[:3]}), "
                f"{len(missing)} missing (e.g. {sorted(missing)[:3]})"
            )
            # Whatever reached the topic, the job must count exactly once. Should the producer
            # have failed before the end of the file, the test sends the sentinels itself, so
            # every window with a trade in the topic closes.
            sentinels = [
                (t["ticker"].encode(), line.encode())
                for t, line in zip(trades, session.trade_lines(), strict=True)
                if t["ts"] >= session.sentinel_ts and t["event_id"] not in copies
            ]
            if sentinels:
                publish_lines(broker.bootstrap, f"{prefix}trades", sentinels)
            in_topic = [t for t in trades if t["event_id"] in copies]
            real = [t for t in in_topic if t["ts"] < session.sentinel_ts]
            expected = qty_by_ticker(real)
            candles = TopicTail(broker.bootstrap, f"{prefix}candles_1m")

            def closed() -> list[dict]:
                return [r for r in candles.rows() if end_ms(r) <= session.sentinel_ts]

            def counted() -> bool:
                assert job.current.running(), job.logs()
                candles.poll(200)
                return volume_by_ticker(closed()) >= expected

            job_report = ""
            try:
                wait_for(counted, 240, "candles_1m to account for every lot")
                job.wait_checkpoint_after(job.wait_checkpoint_after(job.latest_checkpoint_id()))
            except AssertionError as exc:
                job_report = f"{exc}\n{job.diagnosis()}"
            candles.drain()
            rows = closed()
            keys = Counter((r["ticker"], r["window_end"]) for r in rows)
            twice = [k for k, n in keys.items() if n > 1]
            volume = volume_by_ticker(rows)
            if twice or volume != expected:
                lots = {t: (volume[t], expected[t]) for t in expected if volume[t] != expected[t]}
                job_report += (
                    f"\ncandles_1m: {len(twice)} candles committed twice; lots (got, expected) "
                    f"differ for {lots}"
                )
            failovers = len(job.failovers())
            report = (
                f"broker down {outage:.1f} s after {before} of {len(trades)} trades were in Kafka\n"
                f"{producer_report}\n{topic_report}\njob failovers: {failovers}; "
                f"{len(rows)} closed candles{job_report}"
            )
            print(f"\n{report}\n{time.monotonic() - started:.0f} s")
            assert code == 0 and summary and int(summary.group(2)) == len(trades), report
            assert not doubled and not missing, report
            assert not job_report, report
    finally:
        if candles is not None:
            candles.close()
        producer.stop()
        job.stop()
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
