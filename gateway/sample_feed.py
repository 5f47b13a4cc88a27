"""Rows the Flink job produced, replayed into Kafka with shifted times: the page without the job.

    python -m gateway.sample_feed --bootstrap 127.0.0.1:9092 --write-catalog .run/sample-catalog.json --follow 5
    python -m gateway --catalog .run/sample-catalog.json

The rows are tests/fixtures/recorded/: a `runner replay` of a seeded synthetic session (4
tickers, ~53 minutes) and the runner's catalog, re-recorded by `python -m tests.fixtures.record`.
Every instant, and the epoch-ms tail of every event id (the job's `ticker:kind:ms`
convention), moves by the same whole number of minutes so the session ends now. With
`--follow N` the last `--live-minutes` minutes are held back and sent one minute every N s.
The page and gateway tests use the same rows and this module to send them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.catalog import MARKET_STATUS
from gateway.rows import format_instant, parse_instant

RECORDED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "recorded"
MINUTE_MS = 60_000
# The instant a row is "at", for splitting a session into minutes: the first one a row has.
ROW_TIME_COLUMNS = ("window_end", "end_ts", "ts", "alert_time", "outcome_time")


@dataclass(frozen=True)
class Recording:
    """The recorded catalog and rows (as the job wrote them) per stream, market_status included."""

    catalog: dict
    rows: dict[str, list[dict]]

    def time_columns(self, stream: str) -> list[str]:
        spec = next((o for o in self.catalog["outputs"] if o["name"] == stream), MARKET_STATUS)
        return [c["name"] for c in spec["columns"] if c["type"].upper().startswith("TIMESTAMP")]

    def session_end_ms(self) -> int:
        """The end of the last recorded 1-minute candle, epoch ms."""
        return max(_ms(row["window_end"]) for row in self.rows["candles_1m"])

    def shifted(self, end: datetime) -> dict[str, list[dict]]:
        """Every row moved by whole minutes so the last candle ends at `end`'s minute."""
        target = int(end.timestamp() * 1000) // MINUTE_MS * MINUTE_MS
        return self.moved(target - self.session_end_ms())

    def moved(self, delta_ms: int) -> dict[str, list[dict]]:
        return {
            stream: [self._move(stream, row, delta_ms) for row in rows]
            for stream, rows in self.rows.items()
        }

    def _move(self, stream: str, row: dict, delta_ms: int) -> dict:
        moved = dict(row)
        for column in self.time_columns(stream):
            value = row.get(column)
            if value is None:
                continue
            if isinstance(value, int):  # market_status.ts: epoch ms on the topic
                moved[column] = value + delta_ms
            else:
                moved[column] = format_instant(
                    datetime.fromtimestamp((_ms(value) + delta_ms) / 1000, UTC)
                )
        event_id = row.get("event_id")
        if isinstance(event_id, str):
            # The job's ids are `ticker:kind:<epoch ms>[:<horizon>]`: move the instant only.
            parts = event_id.split(":")
            moved["event_id"] = ":".join(
                str(int(p) + delta_ms) if p.isdigit() and len(p) >= 12 else p for p in parts
            )
        return moved

    def catalog_for(self, topics: dict[str, str]) -> dict:
        """The recorded streams named in `topics` (`name`, `name_live` keys) on those topics."""
        outputs = []
        for output in [*self.catalog["outputs"], MARKET_STATUS]:
            name = output["name"]
            if name not in topics:
                continue
            entry = {**output, "topic": topics.get(name, output["topic"])}
            if output.get("live_topic"):
                entry["live_topic"] = topics.get(f"{name}_live", output["live_topic"])
            outputs.append(entry)
        return {"outputs": outputs}


def _ms(value: str | int) -> int:
    moment = parse_instant(value)
    if moment is None:
        raise ValueError(f"not an instant: {value!r}")
    return int(moment.timestamp() * 1000)


def row_time_ms(row: dict) -> int:
    for column in ROW_TIME_COLUMNS:
        if row.get(column) is not None:
            return _ms(row[column])
    raise ValueError(f"row without a time: {row}")


def load(folder: Path = RECORDED) -> Recording:
    catalog = json.loads((folder / "catalog.json").read_text())
    names = [o["name"] for o in catalog["outputs"]] + ["market_status"]
    rows = {}
    for name in names:
        path = folder / f"{name}.jsonl"
        if path.exists():
            rows[name] = [json.loads(line) for line in path.read_text().splitlines() if line]
    return Recording(catalog, rows)


def split_at(rows: dict[str, list[dict]], cut_ms: int) -> tuple[dict, dict]:
    """Rows at or before `cut_ms`, and the rest."""
    before: dict[str, list[dict]] = {}
    after: dict[str, list[dict]] = {}
    for stream, stream_rows in rows.items():
        for row in stream_rows:
            side = before if row_time_ms(row) <= cut_ms else after
            side.setdefault(stream, []).append(row)
    return before, after


def publish(bootstrap: str, catalog: dict, rows: dict[str, Iterable[dict]]) -> int:
    """Send rows keyed by ticker to each stream's topic, and to its live copy when it has one."""
    from kafka import KafkaProducer

    targets = {
        o["name"]: [t for t in (o["topic"], o.get("live_topic")) if t] for o in catalog["outputs"]
    }
    targets.setdefault("market_status", [MARKET_STATUS["topic"]])
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    sent = 0
    try:
        for stream, stream_rows in rows.items():
            for topic in targets.get(stream, []):
                for row in stream_rows:
                    producer.send(topic, key=row["ticker"].encode(), value=json.dumps(row).encode())
                    sent += 1
        producer.flush(30)
    finally:
        producer.close(5)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.sample_feed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--write-catalog", type=Path, help="also write the recorded catalog here")
    parser.add_argument(
        "--follow", type=float, default=0, help="hold back the last minutes, one every N seconds"
    )
    parser.add_argument("--live-minutes", type=int, default=10)
    args = parser.parse_args(argv)
    recording = load()
    if args.write_catalog:
        args.write_catalog.parent.mkdir(parents=True, exist_ok=True)
        args.write_catalog.write_text(json.dumps(recording.catalog, indent=1))
    held = args.live_minutes if args.follow > 0 else 0
    now = datetime.now(UTC)
    rows = recording.shifted(now + timedelta(minutes=held))
    cut = int(now.timestamp() * 1000)
    history, live = split_at(rows, cut)
    print(f"sample_feed: {publish(args.bootstrap, recording.catalog, history)} records sent")
    for minute in range(1, held + 1):
        time.sleep(args.follow)
        step, live = split_at(live, cut + minute * MINUTE_MS)
        publish(args.bootstrap, recording.catalog, step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
