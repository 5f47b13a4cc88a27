"""MOEX ISS: parsers of its JSON responses (pure) and a polite poller of the public REST API.

ISS answers `{"<block>": {"columns": [...], "data": [[...], ...]}, ...}`; we read the blocks
`trades`, `orderbook` and `marketdata` by column name, so extra or reordered columns are fine.
ISS times are Moscow time (UTC+3) without a zone. QUANTITY is in lots (VALUE = PRICE x
QUANTITY x LOTSIZE), which is what our topics carry.

The public ISS is delayed by 15 minutes and needs no key; real-time data needs a paid
subscription. The poller asks each security at most once per `min_interval_s` (and ISS as a
whole at most four times a second), pages with `start=`, skips TRADENOs it has already
published and backs off exponentially on errors.

Over 300 lines: the ISS response parsers and the poller that pages and backs off use the same
block and column names; split, each half would repeat them.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

from producer.records import Book, Record, Reject, Status, Trade
from producer.reference import BOARD
from producer.schedule import MSK, epoch_ms, today_msk, wall_ms
from producer.validate import Invalid, json_text, loads, parse_int, parse_price, validated

ISS_URL = "https://iss.moex.com/iss"
_SECURITY = "/engines/stock/markets/shares/boards/{board}/securities/{secid}"
ISS_DELAY_NOTE = "the public ISS feed is delayed by 15 minutes"

# ISS marketdata TRADINGSTATUS -> our phase. T trading, O opening period (auction), F closing
# period (auction), C closed, N not available for trading, B break, S suspended, I discrete
# auction (after a halt). Other codes go to the DLQ rather than being guessed.
TRADING_STATUS = {
    "T": "trading",
    "O": "opening_auction",
    "F": "closing_auction",
    "C": "closed",
    "N": "closed",
    "B": "halted",
    "S": "halted",
    "I": "halted",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
_SEQNUM = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$")


def trades_url(secid: str, start: int, base: str = ISS_URL) -> str:
    path = _SECURITY.format(board=BOARD, secid=secid)
    return f"{base}{path}/trades.json?iss.meta=off&start={start}"


def marketdata_url(secid: str, base: str = ISS_URL) -> str:
    path = _SECURITY.format(board=BOARD, secid=secid)
    return f"{base}{path}.json?iss.meta=off&iss.only=marketdata"


def orderbook_url(secid: str, base: str = ISS_URL) -> str:
    path = _SECURITY.format(board=BOARD, secid=secid)
    return f"{base}{path}/orderbook.json?iss.meta=off"


# --- pure parsers ------------------------------------------------------------------------


def msk_to_epoch_ms(text: str) -> int:
    """'2026-11-26 10:00:01' (Moscow time) -> epoch ms."""
    if type(text) is not str or not _DATETIME.match(text):
        raise Invalid(f"not an ISS datetime: {text!r}")
    try:
        moment = datetime.fromisoformat(text).replace(tzinfo=MSK)
    except ValueError:
        raise Invalid(f"not an ISS datetime: {text!r}") from None
    return epoch_ms(moment)


def _date_time(day: object, clock: object) -> int:
    if type(day) is not str or not _DATE.match(day):
        raise Invalid(f"not an ISS date: {day!r}")
    if type(clock) is not str or not _TIME.match(clock):
        raise Invalid(f"not an ISS time: {clock!r}")
    return msk_to_epoch_ms(f"{day} {clock}")


def block_rows(doc: dict[str, Any], name: str) -> list[dict[str, Any] | Reject] | None:
    """Rows of block `name` as column->value dicts (a malformed row becomes a Reject);
    None when the block is absent."""
    block = doc.get(name)
    if block is None:
        return None
    if type(block) is not dict:
        raise Invalid(f"ISS block {name!r} is not an object")
    columns, data = block.get("columns"), block.get("data")
    if type(columns) is not list or not all(type(c) is str for c in columns):
        raise Invalid(f"ISS block {name!r} has no list of column names")
    if type(data) is not list:
        raise Invalid(f"ISS block {name!r} has no data list")
    rows: list[dict[str, Any] | Reject] = []
    for n, row in enumerate(data):
        if type(row) is not list or len(row) != len(columns):
            size = len(row) if type(row) is list else type(row).__name__
            rows.append(
                Reject(
                    f"{name}[{n}]",
                    f"row has {size} values for {len(columns)} columns",
                    _row_text(row),
                )
            )
        else:
            rows.append(dict(zip(columns, row, strict=True)))
    return rows


def _row_text(row: object) -> str:
    try:
        return json_text(row)
    except (TypeError, ValueError, RecursionError):
        return repr(row)[:2000]


def _secid(row: dict[str, Any]) -> str:
    secid = row.get("SECID")
    if type(secid) is not str:
        raise Invalid(f"SECID must be a string, got {secid!r}")
    return secid


def _board(row: dict[str, Any]) -> None:
    board = row.get("BOARDID", BOARD)
    if board != BOARD:
        raise Invalid(f"unknown board {board!r} (only {BOARD})")


def trade_from_row(row: dict[str, Any]) -> Trade:
    """One row of the ISS `trades` block -> Trade (event time = TRADEDATE + TRADETIME, MSK)."""
    secid = _secid(row)
    _board(row)
    for column in ("TRADENO", "PRICE", "QUANTITY", "BUYSELL"):
        if row.get(column) is None:
            raise Invalid(f"missing {column}")
    clock = row.get("TRADETIME")
    day = row.get("TRADEDATE")
    systime = row.get("SYSTIME")
    if day is None and type(systime) is str:
        day = systime[:10]  # responses without TRADEDATE: the date of registration
    if clock is None and day is None:
        raise Invalid("missing TRADETIME/TRADEDATE/SYSTIME")
    ts = _date_time(day, clock) if clock is not None else msk_to_epoch_ms(systime)
    side = row["BUYSELL"]
    if side not in ("B", "S"):
        raise Invalid(f"BUYSELL must be 'B' or 'S', got {side!r}")
    trade_id = parse_int(row["TRADENO"], "TRADENO")
    return Trade(
        secid,
        BOARD,
        trade_id,
        ts,
        parse_price(row["PRICE"], secid, "PRICE"),
        parse_int(row["QUANTITY"], "QUANTITY"),
        side,
    )


def _seqnum_ts(seqnum: int) -> int | None:
    """ISS SEQNUM is the Moscow time of the snapshot as YYYYMMDDHHMMSS."""
    match = _SEQNUM.match(str(seqnum))
    if not match:
        return None
    y, mo, d, h, mi, s = (int(g) for g in match.groups())
    try:
        return epoch_ms(datetime(y, mo, d, h, mi, s, tzinfo=MSK))
    except ValueError:
        return None


def books_from_rows(rows: list[dict[str, Any]], day: date | None = None) -> list[Book]:
    """Rows of one ISS `orderbook` block (both sides, any order) -> one Book per SECID.

    Raises Invalid for the first bad row of a security; the caller rejects that security's
    snapshot as a whole (a book with a level missing would be wrong, not partial).
    """
    by_secid: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_secid.setdefault(_secid(row), []).append(row)
    books = []
    for secid, group in by_secid.items():
        bids, asks, seqnums, times = [], [], [], []
        for row in group:
            _board(row)
            side = row.get("BUYSELL")
            level = (
                parse_price(row.get("PRICE"), secid, "PRICE"),
                parse_int(row.get("QUANTITY"), "QUANTITY"),
            )
            if side == "B":
                bids.append(level)
            elif side == "S":
                asks.append(level)
            else:
                raise Invalid(f"BUYSELL must be 'B' or 'S', got {side!r}")
            if row.get("SEQNUM") is not None:
                seqnums.append(parse_int(row["SEQNUM"], "SEQNUM"))
            if row.get("UPDATETIME") is not None:
                times.append(row["UPDATETIME"])
        if not seqnums:
            raise Invalid(f"{secid}: order book without SEQNUM")
        seq = max(seqnums)
        ts = _seqnum_ts(seq)
        if ts is None:
            if day is None or not times:
                raise Invalid(f"{secid}: cannot date the snapshot (SEQNUM {seq})")
            ts = _date_time(day.isoformat(), max(times))
        bids.sort(key=lambda level: level[0], reverse=True)
        asks.sort(key=lambda level: level[0])
        books.append(Book(secid, ts, seq, tuple(bids), tuple(asks)))
    return books


def status_from_row(row: dict[str, Any]) -> Status:
    """One row of the ISS `marketdata` block -> Status of that security."""
    secid = _secid(row)
    _board(row)
    code = row.get("TRADINGSTATUS")
    phase = TRADING_STATUS.get(code) if type(code) is str else None
    if phase is None:
        raise Invalid(f"unknown TRADINGSTATUS {code!r}")
    systime = row.get("SYSTIME")
    if systime is None:
        raise Invalid("missing SYSTIME")
    return Status(secid, msk_to_epoch_ms(systime), phase)


def parse_document(
    doc: Any, source: str, now_ms: int, day: date | None = None
) -> Iterator[Record | Reject]:
    """Every record of one ISS response (or a list of responses), validated.

    Anything unusable becomes a Reject naming the block and row; nothing raises.
    """
    if type(doc) is list:
        for n, item in enumerate(doc):
            yield from parse_document(item, f"{source}[{n}]", now_ms, day)
        return
    if type(doc) is not dict:
        yield Reject(source, "an ISS response must be a JSON object", _row_text(doc))
        return
    found = False
    for name, convert in (("trades", trade_from_row), ("marketdata", status_from_row)):
        try:
            rows = block_rows(doc, name)
        except Invalid as exc:
            yield Reject(f"{source}:{name}", str(exc), _row_text(doc.get(name)))
            found = True
            continue
        if rows is None:
            continue
        found = True
        for n, row in enumerate(rows):
            where = f"{source}:{name}[{n}]"
            if type(row) is Reject:
                yield row._replace(source=f"{source}:{row.source}")
                continue
            try:
                record = convert(row)
            except Invalid as exc:
                yield Reject(where, str(exc), _row_text(row))
                continue
            yield validated(record, now_ms, where, _row_text(row))
    try:
        rows = block_rows(doc, "orderbook")
    except Invalid as exc:
        yield Reject(f"{source}:orderbook", str(exc), _row_text(doc.get("orderbook")))
        return
    if rows is not None:
        found = True
        good = []
        for row in rows:
            if type(row) is Reject:
                yield row._replace(source=f"{source}:{row.source}")
            else:
                good.append(row)
        yield from _books(good, f"{source}:orderbook", now_ms, day)
    if not found:
        yield Reject(source, "no trades, orderbook or marketdata block", _row_text(doc))


def _books(
    rows: list[dict[str, Any]], source: str, now_ms: int, day: date | None
) -> Iterator[Book | Reject]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        secid = row.get("SECID")
        groups.setdefault(secid if type(secid) is str else repr(secid), []).append(row)
    for secid, group in groups.items():
        where = f"{source}:{secid}"
        try:
            (book,) = books_from_rows(group, day)
        except Invalid as exc:
            yield Reject(where, str(exc), _row_text(group))
            continue
        yield validated(book, now_ms, where, _row_text(group))


def parse_text(text: str, source: str, now_ms: int) -> Iterator[Record | Reject]:
    try:
        doc = loads(text)
    except Invalid as exc:
        yield Reject(source, str(exc), text)
        return
    yield from parse_document(doc, source, now_ms)


# --- the poller --------------------------------------------------------------------------

Fetch = Callable[[str, float], bytes]


def urllib_fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(
        url, headers={"User-Agent": "moex-stream-producer/0.1", "Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


class _Security:
    __slots__ = ("secid", "start", "last_tradeno", "due", "errors", "status_due", "last_status")

    def __init__(self, secid: str) -> None:
        self.secid = secid
        self.start = 0  # ISS row offset of the next page within the day's trades
        self.last_tradeno = 0
        self.due = 0.0
        self.errors = 0  # consecutive failures, for the backoff
        self.status_due = 0.0
        self.last_status: tuple[str, str] | None = None


class IssPoller:
    """Polls trades (and, less often, marketdata for the phase) of each security, forever.

    `fetch`, `clock`, `wait` and `wall_ms` are injectable so tests run on recorded responses
    and a fake clock. `wait(seconds)` returns True when the run should stop.
    """

    def __init__(
        self,
        tickers: list[str],
        fetch: Fetch = urllib_fetch,
        *,
        base_url: str = ISS_URL,
        min_interval_s: float = 1.0,
        idle_interval_s: float = 5.0,
        status_interval_s: float = 30.0,
        max_backoff_s: float = 60.0,
        global_interval_s: float = 0.25,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        wall_ms: Callable[[], int] = wall_ms,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.securities = [_Security(t) for t in tickers]
        self.fetch = fetch
        self.base_url = base_url.rstrip("/")
        self.min_interval_s = min_interval_s
        self.idle_interval_s = max(idle_interval_s, min_interval_s)
        self.status_interval_s = status_interval_s
        self.max_backoff_s = max_backoff_s
        self.global_interval_s = global_interval_s  # all securities together: <= 4 requests/s
        self._last_request = -global_interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._stop = threading.Event()
        self.wait = wait or self._stop.wait
        self.wall_ms = wall_ms
        self.on_error = on_error or (lambda message: print(message, file=sys.stderr))
        self.requests = 0
        self.duplicates = 0
        self._day = today_msk(wall_ms() - 15 * 60_000)

    def records(self) -> Iterator[Record | Reject]:
        while True:
            security = min(self.securities, key=lambda s: s.due)
            due = max(security.due, self._last_request + self.global_interval_s)
            delay = due - self.clock()
            if delay > 0 and self.wait(delay):
                return
            self._new_day()
            now = self.clock()
            if self.status_interval_s > 0 and now >= security.status_due:
                yield from self._poll_status(security)
            else:
                yield from self._poll_trades(security)

    def _new_day(self) -> None:
        # ISS pages within one day's trades; after midnight (of the delayed feed) start over.
        day = today_msk(self.wall_ms() - 15 * 60_000)
        if day != self._day:
            self._day = day
            for security in self.securities:
                security.start = 0

    def _get(self, security: _Security, url: str) -> Any | None:
        self.requests += 1
        self._last_request = self.clock()
        try:
            body = self.fetch(url, self.timeout_s)
            doc = loads(body.decode("utf-8"))
            if type(doc) is not dict:
                raise Invalid("response is not a JSON object")
        except Exception as exc:  # network, HTTP status, bad body: back off and retry
            security.errors += 1
            backoff = min(self.max_backoff_s, self.min_interval_s * 2**security.errors)
            security.due = self.clock() + backoff
            self.on_error(
                f"iss: {security.secid}: {type(exc).__name__}: {exc} "
                f"(retry in {backoff:.0f} s) <- {url}"
            )
            return None
        security.errors = 0
        return doc

    def _poll_trades(self, security: _Security) -> Iterator[Record | Reject]:
        url = trades_url(security.secid, security.start, self.base_url)
        doc = self._get(security, url)
        if doc is None:
            return
        source = f"iss:{security.secid}:trades?start={security.start}"
        try:
            rows = block_rows(doc, "trades")
        except Invalid as exc:
            rows = None
            yield Reject(source, str(exc), _row_text(doc)[:10000])
        rows = rows or []
        security.start += len(rows)
        # A non-empty page may have a next one: ask again soon; an empty one means caught up.
        interval = self.min_interval_s if rows else self.idle_interval_s
        security.due = self.clock() + interval
        now_ms = self.wall_ms()
        for n, row in enumerate(rows):
            where = f"{source}[{n}]"
            if type(row) is Reject:
                yield row._replace(source=where)
                continue
            tradeno = row.get("TRADENO")
            if type(tradeno) is int and tradeno <= security.last_tradeno:
                self.duplicates += 1
                continue
            try:
                record: Record | Reject = validated(
                    trade_from_row(row), now_ms, where, _row_text(row)
                )
            except Invalid as exc:
                record = Reject(where, str(exc), _row_text(row))
            if type(tradeno) is int:
                security.last_tradeno = max(security.last_tradeno, tradeno)
            yield record

    def _poll_status(self, security: _Security) -> Iterator[Record | Reject]:
        security.status_due = self.clock() + self.status_interval_s
        doc = self._get(security, marketdata_url(security.secid, self.base_url))
        if doc is None:
            return
        security.due = self.clock() + self.min_interval_s
        source = f"iss:{security.secid}:marketdata"
        for item in parse_document({"marketdata": doc.get("marketdata")}, source, self.wall_ms()):
            # Publish a phase (or a problem) only when it changes, not on every poll.
            key = (item.phase, "") if type(item) is Status else ("", item.reason)
            if type(item) is Status and item.ticker != security.secid:
                continue
            if key != security.last_status:
                security.last_status = key
                yield item

    def stop(self) -> None:
        self._stop.set()
