"""Replay of recorded data: our JSONL, trade CSV and MOEX ISS JSON files, or an `--out` folder.

Every reader yields validated records or Rejects (with `replay:PATH:LINE` as their source) and
never raises on bad content; only an unusable file as a whole (missing, unknown format, a CSV
header without the required columns) raises ReplayError.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from pathlib import Path

from producer import iss
from producer.records import Record, Reject
from producer.schedule import wall_ms
from producer.validate import (
    CSV_COLUMNS,
    Invalid,
    parse_csv_header,
    record_from_json_line,
    trade_from_csv_line,
    validated,
)

FORMATS = ("jsonl", "csv", "iss")
# An --out folder, merged by event time; at equal times books come before the trades that
# hit them, and a phase change after the auction's uncross trades, as the generator wrote.
FOLDER_FILES = ("orderbook.jsonl", "trades.jsonl", "market_status.jsonl")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "iss"}

NowMs = Callable[[], int]


class ReplayError(Exception):
    """The file cannot be replayed at all (the message says why)."""


def detect_format(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ReplayError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"use .jsonl, .csv or .json (ISS), or --format {'|'.join(FORMATS)}"
        )
    return fmt


def _lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None if not UTF-8, text for the DLQ) of every non-blank line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\r\n")
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None, raw.decode("utf-8", errors="replace")
                continue
            yield number, text, text


def read_jsonl(path: Path, now_ms: NowMs) -> Iterator[Record | Reject]:
    for number, text, payload in _lines(path):
        source = f"replay:{path}:{number}"
        if text is None:
            yield Reject(source, "line is not valid UTF-8", payload)
            continue
        try:
            record = record_from_json_line(text)
        except Invalid as exc:
            yield Reject(source, str(exc), payload)
            continue
        yield validated(record, now_ms(), source, payload)


def read_csv(path: Path, now_ms: NowMs) -> Iterator[Record | Reject]:
    """Trades as CSV with a header naming at least ticker,ts,price,qty,side,trade_id."""
    columns: list[str] | None = None
    for number, text, payload in _lines(path):
        source = f"replay:{path}:{number}"
        if columns is None:
            if text is None:
                raise ReplayError(f"{path}:{number}: the header is not valid UTF-8")
            try:
                columns = parse_csv_header(text)
            except Invalid as exc:
                raise ReplayError(f"{path}:{number}: {exc}") from None
            continue
        if text is None:
            yield Reject(source, "line is not valid UTF-8", payload)
            continue
        try:
            record = trade_from_csv_line(text, columns)
        except Invalid as exc:
            yield Reject(source, str(exc), payload)
            continue
        yield validated(record, now_ms(), source, payload)


def read_iss(path: Path, now_ms: NowMs) -> Iterator[Record | Reject]:
    """One ISS JSON response (or a JSON list of responses) saved to a file."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield Reject(f"replay:{path}", "file is not valid UTF-8", raw.decode("utf-8", "replace"))
        return
    yield from iss.parse_text(text, f"replay:{path}", now_ms())


_READERS = {"jsonl": read_jsonl, "csv": read_csv, "iss": read_iss}


def _timed(items: Iterator[Record | Reject]) -> Iterator[tuple[int, Record | Reject]]:
    ts = 0
    for item in items:
        if type(item) is not Reject:
            ts = item.ts
        yield ts, item  # a reject keeps its place right after the record before it


def replay(path: Path, fmt: str = "auto", now_ms: NowMs | None = None) -> Iterator[Record | Reject]:
    """All records of a file, or of an --out folder merged by event time."""
    clock = now_ms or wall_ms
    if path.is_dir():
        files = [path / name for name in FOLDER_FILES if (path / name).is_file()]
        if not files:
            raise ReplayError(f"{path}: a folder to replay must hold {', '.join(FOLDER_FILES)}")
        merged = heapq.merge(*(_timed(read_jsonl(f, clock)) for f in files), key=lambda p: p[0])
        return (item for _, item in merged)
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in _READERS:
        raise ReplayError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt == "csv":
        _check_csv_header(path)
    return _READERS[fmt](path, clock)


def _check_csv_header(path: Path) -> None:
    """Fail at once, before anything is sent, when the CSV header is wrong."""
    for number, text, _ in _lines(path):
        if text is None:
            raise ReplayError(f"{path}:{number}: the header is not valid UTF-8")
        try:
            parse_csv_header(text)
        except Invalid as exc:
            raise ReplayError(f"{path}:{number}: {exc}") from None
        return


__all__ = ["CSV_COLUMNS", "FORMATS", "ReplayError", "detect_format", "replay"]
