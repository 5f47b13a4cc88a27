"""Input that resumes after a pause: no record may be dropped as late.

A pause longer than the sources' idle timeout (MOEX_IDLE_TIMEOUT_MS, 3 s by default) marks every
partition idle. When records flow again, the first partition read back out of idleness sets the
watermark alone; records of the other partitions that are older than it by more than the
watermark delay then count as late and are dropped. Pauses happen in production: the job
waiting for the open, a producer restart, a broker restart, a burst after a network stall.
This test pauses twice (and once before the first record) and expects the exact candles and
liquidity rows of the file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.settings import Settings
from tests.faults_support import (
    RunnerJob,
    TopicTail,
    artifacts_on_failure,
    compare,
    create_prefixed_topics,
    delete_topics,
    end_ms,
    load_jsonl,
    merged_input,
    new_prefix,
    publish_lines,
    synthetic_session,
    wait_for,
)
from tests.golden import oracle

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

TRADES = 4000
PAUSE_S = Settings().idle_timeout_ms / 1000 + 3  # every partition goes idle


def test_job_when_input_resumes_after_a_pause_longer_than_the_idle_timeout_then_no_record_is_dropped(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    session = synthetic_session(tmp_path / "input", seed=31, trades=TRADES)
    real_trades = [t for t in session.trades() if t["ts"] < session.sentinel_ts]
    books = [b for b in load_jsonl(session.orderbook_file) if b["ts"] < session.sentinel_ts]
    expected = {
        "candles_1m": oracle.candles(oracle.valid_trades(real_trades), 60_000),
        "liquidity_1s": oracle.liquidity_1s(books),
    }
    prefix = new_prefix("idle")
    topics = create_prefixed_topics(kafka_bootstrap, prefix)
    job = RunnerJob(kafka_bootstrap, prefix, tmp_path / "job", only=tuple(expected))
    tails: dict[str, TopicTail] = {}
    try:
        with artifacts_on_failure(tmp_path, "idle"):
            job.start()
            job.wait_running()
            records = merged_input(session)
            thirds = [records[i * len(records) // 3 : (i + 1) * len(records) // 3] for i in range(3)]
            last_sent = time.monotonic()
            for chunk in thirds:
                # The pause is the condition under test (as a rate paces a feed), not a wait
                # for a result.
                since = last_sent
                wait_for(lambda s=since: time.monotonic() - s >= PAUSE_S, PAUSE_S + 5, "a pause")
                by_topic: dict[str, list] = {}
                for kind, key, value in chunk:
                    by_topic.setdefault(kind, []).append((key, value))
                for kind, lines in by_topic.items():
                    publish_lines(kafka_bootstrap, f"{prefix}{kind}", lines)
                last_sent = time.monotonic()
            for name in expected:
                tails[name] = TopicTail(kafka_bootstrap, f"{prefix}{name}")

            def closed(name: str) -> list[dict]:
                return [r for r in tails[name].rows() if end_ms(r) <= session.sentinel_ts]

            def settled() -> bool:
                assert job.current.running(), job.logs()
                for tail in tails.values():
                    tail.poll(200)
                # The last window of each output (just before the sentinels) is out: all are.
                return all(
                    any(r["window_end"] == rows[-1]["window_end"] for r in closed(name))
                    for name, rows in expected.items()
                )

            wait_for(settled, 180, "the last window of each output")
            job.wait_checkpoint_after(job.wait_checkpoint_after(job.latest_checkpoint_id()))
            problems = []
            for name, rows in expected.items():
                tails[name].drain()
                result = compare(name, rows, closed(name), ["ticker", "window_end"])
                if not result.ok:
                    problems.append(result.summary(limit=3))
            print(f"\n{len(thirds)} bursts after {PAUSE_S:.0f} s pauses; {time.monotonic() - started:.0f} s")
            assert not problems, "\n".join([*problems, job.diagnosis()])
    finally:
        for tail in tails.values():
            tail.close()
        job.stop()
        delete_topics(kafka_bootstrap, topics)
