"""Input that resumes after a pause, one partition ahead of the others: nothing may be dropped.

A pause longer than the sources' idle timeout (MOEX_IDLE_TIMEOUT_MS; it was 3 s) marks every
partition idle. When records flow again, a partition that is back first sets the watermark alone;
records of partitions still marked idle that are older than it by more than the watermark delay
then count as late, and the windows drop them. Resumption is staggered in production: the ISS
poller fetches one security after another, a producer flushes per-partition batches, a broker
restart brings partitions back one by one, a job catches up a backlog one fetch at a time.

Here half of a session is read, the input pauses for 10 s, then the second half arrives on
one partition first and, once the job has read it, on the other two. The candles and liquidity
rows must equal the file's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults_support import (
    TICKERS,
    RunnerJob,
    TopicTail,
    artifacts_on_failure,
    committed_source_offsets,
    compare,
    create_prefixed_topics,
    delete_topics,
    end_ms,
    end_offsets,
    expected_candles_and_liquidity,
    merged_input,
    new_prefix,
    publish_lines,
    synthetic_session,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

TRADES = 4000
PAUSE_S = 10.0  # a producer or broker restart; longer than the default 3 s idle timeout


def partition_of(ticker: str) -> int:
    """Tickers spread over the 3 partitions by hand, so the test knows which is which."""
    return TICKERS.index(ticker) % 3 if ticker in TICKERS else 0


def test_job_when_input_resumes_after_a_pause_one_partition_first_then_no_record_is_dropped(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    session = synthetic_session(tmp_path / "input", seed=31, trades=TRADES)
    expected = expected_candles_and_liquidity(session)
    prefix = new_prefix("idle")
    topics = create_prefixed_topics(kafka_bootstrap, prefix)
    job = RunnerJob(kafka_bootstrap, prefix, tmp_path / "job", only=tuple(expected))
    records = merged_input(session)
    first_half, second_half = records[: len(records) // 2], records[len(records) // 2 :]

    def publish(chunk: list, partitions: set[int]) -> None:
        by_topic: dict[str, list] = {}
        for kind, key, value in chunk:
            partition = partition_of(key.decode()) if kind != "market_status" else 0
            if kind == "market_status" or partition in partitions:
                by_topic.setdefault(kind, []).append((key, value, partition))
        for kind, lines in by_topic.items():
            publish_lines(kafka_bootstrap, f"{prefix}{kind}", lines)

    def read_all() -> bool:
        """The job has confirmed (checkpointed) every record now in trades and orderbook."""
        assert job.current.running(), job.logs()
        return all(
            committed_source_offsets(kafka_bootstrap, job.run_id, f"{prefix}{kind}")
            >= sum(end_offsets(kafka_bootstrap, f"{prefix}{kind}", False).values())
            for kind in ("trades", "orderbook")
        )

    tails: dict[str, TopicTail] = {}
    try:
        with artifacts_on_failure(tmp_path, "idle"):
            publish(first_half, {0, 1, 2})  # a backlog, read as soon as the job starts
            job.start()
            job.wait_running()
            wait_for(read_all, 180, "the job to read the first half")
            paused = time.monotonic()  # partitions 1 and 2 are silent from here
            # The pause is the fault under test (a parameter, not a wait for a result).
            wait_for(lambda: time.monotonic() - paused >= PAUSE_S, PAUSE_S + 5, "the pause")
            publish(second_half, {0})
            wait_for(read_all, 120, "the job to read partition 0 of the second half")
            silent = time.monotonic() - paused
            publish(second_half, {1, 2})
            wait_for(read_all, 120, "the job to read the rest")
            for name in expected:
                tails[name] = TopicTail(kafka_bootstrap, f"{prefix}{name}")
            # Every closed window is out within a few checkpoints of the last record read.
            job.wait_checkpoint_after(job.latest_checkpoint_id() + 3)
            problems = []
            for name, rows in expected.items():
                tails[name].drain()
                closed = [r for r in tails[name].rows() if end_ms(r) <= session.sentinel_ts]
                result = compare(name, rows, closed, ["ticker", "window_end"])
                if not result.ok:
                    problems.append(result.summary(limit=2))
            print(f"\npaused {PAUSE_S:.0f} s, partitions 1-2 silent {silent:.0f} s while "
                  f"partition 0 ran ahead; {time.monotonic() - started:.0f} s")  # fmt: skip
            assert not problems, "\n".join([*problems, job.diagnosis()])
    finally:
        for tail in tails.values():
            tail.close()
        job.stop()
        delete_topics(kafka_bootstrap, topics)
