"""Kafka records to buffer entries: decode JSON, put every instant in one ISO-8601 UTC form."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.catalog import StreamSpec

# fromisoformat takes at most 6 fractional digits; Flink may print 9.
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(slots=True)
class Entry:
    """One row as kept in the buffers and sent to clients."""

    partition: int
    offset: int
    ticker: str
    event_id: str | None  # the stream's dedup_key value, for at-least-once topics
    data: str  # the row as compact JSON, encoded once for every client
    seq: int = 0  # ingest order within the stream, set by the hub


def parse_instant(value: Any) -> datetime | None:
    """ISO-8601 with Z or an offset, 'YYYY-MM-DD HH:MM:SS[.fff]' meaning UTC, or epoch ms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_instant(moment: datetime) -> str:
    """2026-11-26T07:01:00.000Z: millisecond precision, always UTC, always the same length."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def normalise_row(row: dict[str, Any], time_columns: frozenset[str]) -> dict[str, Any]:
    for column in time_columns:
        value = row.get(column)
        if value is None:
            continue
        moment = parse_instant(value)
        if moment is not None:
            row[column] = format_instant(moment)
    return row


def _reject_constant(name: str) -> None:
    # JSON from Kafka may carry NaN/Infinity (Python writers allow them); browsers reject them.
    return None


def _finite_float(text: str) -> float | None:
    number = float(text)  # 1e999 parses as inf
    return number if math.isfinite(number) else None


def to_entry(
    spec: StreamSpec, partition: int, offset: int, key: bytes | None, value: bytes | None
) -> Entry | None:
    """The entry for one record, or None when the value is not a JSON object."""
    if value is None:
        return None
    try:
        row = json.loads(value, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(row, dict):
        return None
    ticker = row.get("ticker")
    if not isinstance(ticker, str):
        ticker = key.decode("utf-8", "replace") if key else ""
    event_id = None
    if spec.dedup_key:
        raw_id = row.get(spec.dedup_key)
        event_id = None if raw_id is None else str(raw_id)
    normalise_row(row, spec.time_columns)
    data = json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Entry(partition, offset, ticker, event_id, data)
