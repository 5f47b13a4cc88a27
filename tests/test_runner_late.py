"""Late records are reported, not dropped silently: a trade and a book snapshot that arrive after
the watermark has passed their slot reach input_rejects with reason `late`, and the candles of
their second stay as they were (the late trade is not counted twice or anywhere else).

The live job on the session's broker (replay cannot show this: it sorts its inputs by time).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults_support import (
    RunnerJob,
    TopicTail,
    create_prefixed_topics,
    delete_topics,
    new_prefix,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.flink]

T0 = 1764140400000  # 2025-11-26 07:00:00 UTC, 10:00 MSK
TICKERS = ("SBER", "GAZP", "LKOH")


def trade(ticker: str, number: int, ts: int, qty: int = 1) -> dict:
    return {
        "event_id": f"{ticker}:T:{number}",
        "ticker": ticker,
        "board": "TQBR",
        "trade_id": number,
        "ts": ts,
        "price": 100.5,
        "qty": qty,
        "side": "B",
    }


def book(ticker: str, seq: int, ts: int) -> dict:
    return {
        "event_id": f"{ticker}:B:{seq}",
        "ticker": ticker,
        "ts": ts,
        "seq": seq,
        "bids": [[100.4, 10]],
        "asks": [[100.6, 12]],
    }


def send(bootstrap: str, prefix: str, rows: list[tuple[str, int, dict]]) -> None:
    """(input, partition, payload): every partition gets data, so none holds the watermark."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for kind, partition, row in rows:
        producer.send(
            f"{prefix}{kind}",
            key=row["ticker"].encode(),
            value=json.dumps(row).encode(),
            partition=partition,
        )
    producer.flush()
    producer.close()


def on_time(second: int) -> list[tuple[str, int, dict]]:
    rows = []
    for partition, ticker in enumerate(TICKERS):
        ts = T0 + second * 1000 + 500
        rows.append(("trades", partition, trade(ticker, 1000 + second, ts)))
        rows.append(("orderbook", partition, book(ticker, 1000 + second, ts)))
    return rows


def test_live_job_when_a_trade_and_a_book_arrive_late_then_input_rejects_reports_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = new_prefix("late")
    topics = create_prefixed_topics(kafka_bootstrap, prefix)
    job = RunnerJob(kafka_bootstrap, prefix, tmp_path / "job", only=("candles_1s", "input_rejects"))
    tails: dict[str, TopicTail] = {}
    try:
        job.start()
        job.wait_running(600)  # planning every sql/ file: minutes on a busy machine
        # Seconds 0..9 on time: the watermark (1 s behind) passes second 8.
        send(kafka_bootstrap, prefix, [row for s in range(10) for row in on_time(s)])
        tails = {
            n: TopicTail(kafka_bootstrap, f"{prefix}{n}") for n in ("candles_1s", "input_rejects")
        }

        def sber_candle_of_second_2() -> list[dict]:
            tails["candles_1s"].poll(200)
            return [
                r
                for r in tails["candles_1s"].rows()
                if r["ticker"] == "SBER" and r["window_end"].startswith("2025-11-26T07:00:03")
            ]

        # Its window has closed (and been committed): the watermark is surely past second 2.
        (candle,) = wait_for(sber_candle_of_second_2, 120, "the SBER candle of 07:00:02")
        late = [
            ("trades", 0, trade("SBER", 1, T0 + 2_100, qty=7)),
            ("orderbook", 0, book("SBER", 1, T0 + 2_100)),
        ]
        # Then time moves on, so the job keeps checkpointing and committing.
        send(kafka_bootstrap, prefix, late + [row for s in range(10, 14) for row in on_time(s)])

        def late_rows() -> list[dict]:
            tails["input_rejects"].poll(200)
            rows = [r for r in tails["input_rejects"].rows() if r["reason"] == "late"]
            return rows if len(rows) >= 2 else []

        rows = wait_for(late_rows, 120, "two `late` rows in input_rejects")
        assert sorted((r["input"], r["event_id"], r["ts"]) for r in rows) == [
            ("orderbook", "SBER:B:1", T0 + 2_100),
            ("trades", "SBER:T:1", T0 + 2_100),
        ]
        assert all(r["kafka_partition"] == 0 and r["records"] == 1 for r in rows)
        assert json.loads(next(r for r in rows if r["input"] == "trades")["payload"])["qty"] == 7
        # Nothing else was rejected: every on-time record counted.
        assert {r["reason"] for r in tails["input_rejects"].rows()} == {"late"}

        # The closed candle was not re-emitted with the late trade in it.
        def candles_after_the_late_records() -> bool:
            tails["candles_1s"].poll(200)
            return any(
                r["window_end"].startswith("2025-11-26T07:00:12")
                for r in tails["candles_1s"].rows()
            )

        wait_for(candles_after_the_late_records, 120, "the candles after the late records")
        assert sber_candle_of_second_2() == [candle]
        assert candle["volume"] == 1
    finally:
        for tail in tails.values():
            tail.close()
        job.stop()
        delete_topics(kafka_bootstrap, topics)
