"""Exactly-once under job crashes: the whole job is SIGKILLed mid-stream, twice.

A seeded synthetic evening session (30,000 trades, 10 tickers, with books, ended by one sentinel
trade and book per ticker ten minutes later so every real window closes) is fed into Kafka by
an idempotent kafka-python producer, as the exchange feed would be: it never stops, fast while
the job runs and at a trickle while it is down (so each crash is mid-stream and the job always
restarts onto a backlog). `python -m runner run` (every sql/ output) is killed with SIGKILL on
its whole process group (JVM and Python workers) right after a checkpoint confirmed progress,
and started again: it restores the newest retained checkpoint. The committed results, read
with read_committed, are then compared with `python -m runner replay` over the same files:
every exactly-once output as a multiset by grain (no duplicate, none missing, same values,
doubles within 1e-9), and the at-least-once `_live` alert twins after de-duplication by event_id.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults_support import (
    Feeder,
    ReplayOracle,
    RunnerJob,
    Session,
    TopicTail,
    artifacts_on_failure,
    committed_source_offsets,
    compare,
    create_prefixed_topics,
    delete_topics,
    end_ms,
    end_offsets,
    load_jsonl,
    merged_input,
    new_prefix,
    synthetic_session,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

TRADES = 30_000
CRASHES = 2
FEED_RATE = 3000  # records a second while the job runs: ~14 s of feed for 41,000 records
TRICKLE_RATE = 40  # records a second while it is down: the feed never stops, nor ends early
MIN_PROGRESS = 4000  # trades a checkpoint must confirm since the previous crash
# Records fed at FEED_RATE per start before the feed slows to a trickle: enough for MIN_PROGRESS
# trades (~73 % of the records are trades) with a margin, so that however slowly a start gets
# going the feed never runs out before the last crash (2 x 9,000 of 41,000 records).
PHASE_RECORDS = 9000
EXACTLY_ONCE = (
    "candles_1s", "candles_1m", "candles_5m", "rolling_1m", "indicators_1m", "liquidity_1s",
    "signals", "anomalies",
)  # fmt: skip
LIVE_TWINS = {"signals_live": "signals", "anomalies_live": "anomalies"}
GRAIN = {name: ["ticker", "window_end"] for name in EXACTLY_ONCE} | {
    "signals": ["event_id"],
    "anomalies": ["event_id"],
}


def closed(rows: list[dict], session: Session) -> list[dict]:
    """Rows of windows the live job closes: those ending by the sentinels' event time."""
    return [row for row in rows if end_ms(row) <= session.sentinel_ts]


def stuck(tails: dict[str, TopicTail], expected: dict[str, list[dict]], session: Session) -> str:
    """Where each result topic stands: rows seen, and the committed (last stable) end offsets
    against the log end, which differ while a transaction is open."""
    lines = []
    for name, tail in tails.items():
        grain = GRAIN[LIVE_TWINS.get(name, name)]
        keys = {tuple(str(r.get(c)) for c in grain) for r in closed(tail.rows(), session)}
        stable = tail.consumer.end_offsets(tail.tps)
        ends = end_offsets(tail.consumer.config["bootstrap_servers"], tail.topic, committed=False)
        lines.append(
            f"{name}: {len(keys)} of {len(expected[LIVE_TWINS.get(name, name)])} keys; "
            f"last stable offsets {[stable[tp] for tp in tail.tps]}, "
            f"log ends {[ends[tp.partition] for tp in tail.tps]}"
        )
    return "\n".join(lines)


def test_job_when_killed_mid_stream_repeatedly_then_committed_results_equal_the_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    session = synthetic_session(tmp_path / "input", seed=11, trades=TRADES)
    trade_records = len(session.trade_lines())
    inputs = {
        "trades": trade_records,
        "orderbook": len(session.orderbook_file.read_text().splitlines()),
    }
    # The batch oracle runs beside the live job: the same files through the same sql/.
    oracle = ReplayOracle(session, tmp_path)
    prefix = new_prefix("job")
    topics = create_prefixed_topics(kafka_bootstrap, prefix)
    trades = f"{prefix}trades"
    job = RunnerJob(kafka_bootstrap, prefix, tmp_path / "job")
    feeder = Feeder(kafka_bootstrap, prefix, merged_input(session), rate=TRICKLE_RATE)
    tails: dict[str, TopicTail] = {}
    crashes: list[tuple[int, int, float]] = []  # checkpoint, trades confirmed, seconds in
    timings: list[str] = []
    try:
        with artifacts_on_failure(tmp_path, "job"):
            oracle.start()
            feeder.start()  # the market is already trading when the job first starts
            job.start()
            for start in range(1, CRASHES + 2):
                job.wait_running()
                timings.append(f"start {start} running at {time.monotonic() - started:.0f} s")
                base = 0
                if start > 1:
                    restored = job.restored_from()
                    assert restored is not None, f"start {start} did not restore a checkpoint"
                    assert int(restored["id"]) >= crashes[-1][0], (restored, crashes)
                    base = int(restored["id"])
                feeder.rate = FEED_RATE
                if start == CRASHES + 1:
                    break
                before = crashes[-1][1] if crashes else 0
                phase_end = feeder.sent + PHASE_RECORDS

                def progressed(
                    base: int = base, before: int = before, phase_end: int = phase_end
                ) -> tuple[int, int] | None:
                    if feeder.sent >= phase_end:
                        feeder.rate = TRICKLE_RATE  # enough for this start: keep the rest
                    checkpoint = job.latest_checkpoint_id()
                    confirmed = committed_source_offsets(kafka_bootstrap, job.run_id, trades)
                    if checkpoint > base and confirmed >= before + MIN_PROGRESS:
                        return checkpoint, confirmed
                    return None

                checkpoint, confirmed = wait_for(
                    progressed, 240, f"a checkpoint confirming {MIN_PROGRESS} more trades"
                )
                job.crash()
                feeder.rate = (
                    TRICKLE_RATE  # a slower feed while it is down: every crash is mid-stream
                )
                crashes.append((checkpoint, confirmed, time.monotonic() - started))
                assert not feeder.done.is_set(), "the feed ended before the crash"
                job.start()
            report = "\n".join(
                f"crash {n} at {at:.0f} s, after checkpoint #{cp}: "
                f"{confirmed} of {trade_records} trades confirmed"
                for n, (cp, confirmed, at) in enumerate(crashes, start=1)
            )
            # Mid-stream: each crash came before the job had confirmed the whole input.
            assert all(confirmed < trade_records for _, confirmed, _ in crashes), report
            feeder.wait_done(240)
            replay = oracle.wait(300)
            expected = {
                name: closed(load_jsonl(replay / f"{name}.jsonl"), session) for name in EXACTLY_ONCE
            }
            for name in [*EXACTLY_ONCE, *LIVE_TWINS]:
                tails[name] = TopicTail(kafka_bootstrap, f"{prefix}{name}")

            def complete() -> bool:
                assert job.current.running(), job.logs()
                done = True
                for name, tail in tails.items():
                    tail.poll(100)
                    grain = GRAIN[LIVE_TWINS.get(name, name)]
                    keys = {
                        tuple(str(r.get(c)) for c in grain) for r in closed(tail.rows(), session)
                    }
                    done = done and len(keys) >= len(expected[LIVE_TWINS.get(name, name)])
                return done

            def consumed() -> bool:
                assert job.current.running(), job.logs()
                return all(
                    committed_source_offsets(kafka_bootstrap, job.run_id, f"{prefix}{kind}") >= n
                    for kind, n in inputs.items()
                )

            wait_for(consumed, 300, "the job to confirm the whole input", every_s=0.5)
            timings.append(f"input confirmed at {time.monotonic() - started:.0f} s")
            # Every closed window is out within seconds of the last input record (signals wait
            # for the market_status source to turn idle: MOEX_IDLE_TIMEOUT_MS).
            confirmed_at = job.latest_checkpoint_id()
            wait_for(
                lambda: complete() or job.latest_checkpoint_id() >= confirmed_at + 30,
                180,
                "every expected row, or thirty more checkpoints",
            )
            # What an open transaction still holds is committed by the next two checkpoints.
            timings.append(f"results complete at {time.monotonic() - started:.0f} s")
            job.wait_checkpoint_after(job.wait_checkpoint_after(job.latest_checkpoint_id()))
            report += "\n" + "; ".join(timings) + "\n" + stuck(tails, expected, session)
            failures = []
            for name in EXACTLY_ONCE:
                tails[name].drain()
                rows = closed(tails[name].rows(), session)
                result = compare(name, expected[name], rows, GRAIN[name])
                if not result.ok:
                    failures.append(result.summary())
            for live, name in LIVE_TWINS.items():
                tails[live].drain()
                rows = closed(tails[live].rows(), session)
                first_copies = list({row["event_id"]: row for row in reversed(rows)}.values())
                result = compare(live, expected[name], first_copies, ["event_id"])
                if not result.ok:
                    failures.append(result.summary())
            counts = ", ".join(f"{n} {len(expected[n])}" for n in EXACTLY_ONCE)
            print(f"\n{report}\nexpected rows: {counts}; {time.monotonic() - started:.0f} s")
            assert not failures, "\n".join([report, *failures, job.diagnosis()])
    finally:
        for tail in tails.values():
            tail.close()
        feeder.close()
        job.stop()
        oracle.stop()
        delete_topics(kafka_bootstrap, topics)
