"""Write the golden cases: inputs (topic payloads, one per line) and expected.jsonl.

    .venv/bin/python -m tests.golden.make_golden        # rewrites tests/golden/<output>/<case>/

Expected rows come from tests/golden/oracle.py, never from the Flink job; review the diff of
expected.jsonl by hand before committing a change. Every case is deterministic (fixed seeds).

Over 300 lines: one hand-reviewed input builder per golden case, each small.
"""

from __future__ import annotations

import json
import random
import shutil
from decimal import Decimal
from pathlib import Path

from tests.golden import algopack_reference, oracle

HERE = Path(__file__).resolve().parent
T0 = 1764140400000  # 2025-11-26 07:00:00 UTC, 10:00 in Moscow: the main session is open


class Trades:
    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.next_id = 1_000_000

    def add(self, ticker: str, ts: int, price: float, qty: int = 1, trade_id: int | None = None):
        trade_id = trade_id if trade_id is not None else self.next_id
        self.next_id = max(self.next_id, trade_id) + 1
        row = {
            "event_id": f"{ticker}:T:{trade_id}",
            "ticker": ticker,
            "board": "TQBR",
            "trade_id": trade_id,
            "ts": ts,
            "price": price,
            "qty": qty,
            "side": "B" if trade_id % 2 else "S",
        }
        self.rows.append(row)
        return row


def _json(value):
    if isinstance(value, Decimal):
        return float(value) if value == value.to_integral_value() else value
    return value


def write_case(output: str, case: str, inputs: dict[str, list], expected: list[dict]) -> None:
    folder = HERE / output / case
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, rows in inputs.items():
        lines = [r if isinstance(r, str) else json.dumps(r, separators=(",", ":")) for r in rows]
        (folder / f"{name}.jsonl").write_text("".join(f"{line}\n" for line in lines))
    text = "".join(
        json.dumps({k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()}) + "\n"
        for row in expected
    )
    (folder / "expected.jsonl").write_text(text)


def valid(rows: list) -> list[dict]:
    return oracle.valid_trades(r for r in rows if isinstance(r, dict))


def candles_cases() -> None:
    t = Trades()
    # Two trades in the same millisecond, written in reverse trade-number order: the open is
    # the lower trade number, the close the higher, whatever the arrival order.
    t.add("SBER", T0 + 100, 285.10, 10, trade_id=500)
    t.add("SBER", T0 + 100, 285.00, 5, trade_id=499)
    t.add("SBER", T0 + 700, 285.30, 7, trade_id=501)
    retried = t.add("SBER", T0 + 1_200, 285.20, 3, trade_id=502)
    t.add("GAZP", T0 + 50, 160.05, 100, trade_id=600)
    t.add("GAZP", T0 + 2_999, 160.00, 40, trade_id=601)
    rows: list = list(t.rows)
    rows.append(dict(retried))  # a producer retry: same event_id, dropped
    rows.append({**retried, "event_id": "SBER:T:9", "trade_id": 9, "qty": 0})  # invalid: qty 0
    rows.append({**retried, "event_id": "SBER:T:10", "trade_id": 10, "price": -1})  # invalid
    rows.append({k: v for k, v in retried.items() if k != "ts"} | {"event_id": "SBER:T:11"})
    rows.append("this line is not JSON")  # skipped by the source, as on the topic
    write_case(
        "candles_1s",
        "same_ms_retry_and_invalid",
        {"trades": rows},
        oracle.candles(valid(rows), 1000),
    )

    t = Trades()
    for minute, prices in ((0, [100.0, 101.5, 99.5, 100.5]), (1, [100.25]), (3, [102.0, 101.0])):
        for k, price in enumerate(prices):
            t.add("SBER", T0 + minute * 60_000 + k * 7_000 + 3, price, 10 + k)
    t.add("LKOH", T0 + 59_999, 7000.0, 2)
    t.add("LKOH", T0 + 60_000, 7010.5, 3)
    write_case(
        "candles_1m",
        "gap_minute_and_boundary",
        {"trades": t.rows},
        oracle.candles(valid(t.rows), 60_000),
    )

    t = Trades()
    for k, (offset, price) in enumerate(
        ((0, 50.0), (61_000, 50.5), (299_999, 49.0), (300_000, 49.5), (540_000, 51.0))
    ):
        t.add("VTBR", T0 + offset, price, 100 * (k + 1))
    write_case(
        "candles_5m", "window_boundary", {"trades": t.rows}, oracle.candles(valid(t.rows), 300_000)
    )


def rolling_cases() -> None:
    rng = random.Random(11)
    t = Trades()
    price = 250.0
    for second in range(95):
        if second in (20, 21, 50):
            continue  # seconds without trades: the return spans the gap
        for _ in range(rng.randint(1, 2)):
            price = round(price + rng.choice((-0.05, 0.0, 0.05)), 2)
            t.add("SBER", T0 + second * 1000 + rng.randint(0, 999), price, rng.randint(1, 9))
    # A ticker starting at 07:00:35: its first full window is [07:00:40, 07:01:40).
    for second in range(35, 105, 3):
        t.add("ROSN", T0 + second * 1000 + 10, 550.0 + (second % 7) * 0.5, 4)
    t.rows.sort(key=lambda r: r["ts"])
    write_case(
        "rolling_1m", "gaps_and_late_start", {"trades": t.rows}, oracle.rolling_1m(valid(t.rows))
    )


def minute_closes(t: Trades, ticker: str, closes: list[float], start_minute: int = 0) -> None:
    """One to three trades a minute, the last at the given close."""
    rng = random.Random(len(closes) + start_minute)
    for m, close in enumerate(closes):
        base = T0 + (start_minute + m) * 60_000
        for k in range(rng.randint(0, 2)):
            t.add(
                ticker,
                base + 5_000 + k * 9_000,
                round(close * (1 + rng.uniform(-0.002, 0.002)), 2),
                3,
            )
        t.add(ticker, base + 50_000, close, rng.randint(1, 20))


def indicators_cases() -> None:
    rng = random.Random(5)
    closes, price = [], 300.0
    for _ in range(45):
        price = round(price * (1 + rng.gauss(0, 0.004)), 2)
        closes.append(price)
    t = Trades()
    minute_closes(t, "SBER", closes[:18])
    minute_closes(t, "SBER", closes[18:], start_minute=20)  # two minutes without trades
    t.rows.sort(key=lambda r: r["ts"])
    write_case(
        "indicators_1m", "warm_up_and_gap", {"trades": t.rows}, oracle.indicators_1m(valid(t.rows))
    )


def flat_slide_rally_slide() -> list[float]:
    """Flat, a slide, a rally, a slide: death, golden and death crosses, RSI extremes."""
    closes = [100.0 + 0.05 * (k % 3) for k in range(30)]
    closes += [closes[-1] - 0.4 * (k + 1) for k in range(15)]
    closes += [closes[-1] + 0.6 * (k + 1) for k in range(20)]
    closes += [closes[-1] - 0.5 * (k + 1) for k in range(20)]
    closes = [round(c, 2) for c in closes]
    return closes


def signals_cases() -> None:
    closes = flat_slide_rally_slide()
    t = Trades()
    minute_closes(t, "GMKN", closes)
    minute_closes(t, "PLZL", closes)  # same market, but halted during its last slide
    t.rows.sort(key=lambda r: r["ts"])
    status = [
        {"event_id": "*:S:1", "ticker": "*", "ts": T0 - 60_000, "phase": "trading"},
        # The whole market in an auction over the rally's golden cross (candle 07:54-07:55) ...
        {"event_id": "*:S:2", "ticker": "*", "ts": T0 + 53 * 60_000, "phase": "closing_auction"},
        {"event_id": "*:S:3", "ticker": "*", "ts": T0 + 57 * 60_000, "phase": "trading"},
        # ... and PLZL alone halted for the last slide.
        {"event_id": "PLZL:S:4", "ticker": "PLZL", "ts": T0 + 65 * 60_000, "phase": "halted"},
    ]
    status.append(dict(status[1]))  # a duplicate status message changes nothing
    write_case(
        "signals",
        "crosses_rsi_and_phases",
        {"trades": t.rows, "market_status": status},
        oracle.signals(valid(t.rows), status),
    )


def strategies_cases() -> None:
    """Each strategy on the signals case's market (a flat start, a slide, a rally, a slide) in
    two tickers with lot sizes 10 and 1: entries, exits, an open position at the end."""
    closes = flat_slide_rally_slide()
    t = Trades()
    minute_closes(t, "GMKN", closes)
    minute_closes(t, "PLZL", closes, start_minute=3)  # joins the portfolio three minutes late
    t.rows.sort(key=lambda r: r["ts"])
    for name in ("ema_cross_12_26", "rsi_reversion_14", "bollinger_breakout_20"):
        write_case(
            name,
            "two_tickers_round_trips",
            {"trades": t.rows},
            oracle.strategy(name, valid(t.rows)),
        )


def anomalies_cases() -> None:
    t = Trades()
    price = 100.0
    for second in range(120):
        if second == 30:
            price = 102.5  # +2.5 % within a second: spike_up
        if second == 70:
            price = 100.4  # -2.05 % : spike_down
        if second == 95:
            price = 101.9  # +1.49 %: no anomaly
        t.add("AFLT", T0 + second * 1000 + 200, price, 1)
    # 25 quiet minutes for MGNT, then one minute with 50 times the volume.
    for minute in range(25):
        qty = 500 if minute == 22 else 10 + minute % 3
        t.add("MGNT", T0 + minute * 60_000 + 30_000, 5000.0 + minute, qty)
    t.rows.sort(key=lambda r: r["ts"])
    write_case(
        "anomalies", "spikes_and_volume", {"trades": t.rows}, oracle.anomalies(valid(t.rows))
    )

    # Measured from the trough: from 100.0 the price dips to 99.0, then jumps to 102.1. That is
    # +2.1 % from the first bar too, but the dip ended that attempt: the spike starts at 99.0
    # (+3.1 %). For spike_down the mirror image: 105.0 up to 106.0, then down to 102.8.
    t = Trades()
    for offset, price in (
        (0, 100.0),
        (1_000, 100.5),
        (2_000, 99.0),
        (3_000, 100.0),
        (4_000, 102.1),
    ):
        t.add("SBER", T0 + offset + 50, price, 3)
    for offset, price in (
        (0, 105.0),
        (1_000, 104.5),
        (2_000, 106.0),
        (3_000, 105.0),
        (4_000, 102.8),
    ):
        t.add("GAZP", T0 + offset + 50, price, 3)
    write_case(
        "anomalies", "spike_from_trough", {"trades": t.rows}, oracle.anomalies(valid(t.rows))
    )


def liquidity_cases() -> None:
    def book(seq: int, ts: int, bids: list, asks: list, ticker: str = "SBER") -> dict:
        return {
            "event_id": f"{ticker}:B:{seq}",
            "ticker": ticker,
            "ts": ts,
            "seq": seq,
            "bids": bids,
            "asks": asks,
        }

    ten_bids = [[285.0 - 0.01 * k, 10 + k] for k in range(10)]
    ten_asks = [[285.02 + 0.01 * k, 5 + 2 * k] for k in range(10)]
    books = [
        book(1, T0 + 100, ten_bids, ten_asks),
        # Same millisecond, higher seq: this one is the last snapshot of the second.
        book(3, T0 + 900, [[285.01, 7]] + ten_bids[:9], ten_asks),
        book(2, T0 + 900, ten_bids, ten_asks),
        book(4, T0 + 1_500, ten_bids[:3], ten_asks[:2]),  # thin book: fewer than 5 levels
        book(5, T0 + 2_500, ten_bids, []),  # no asks: spread and mid are NULL
        book(1, T0 + 300, [[160.0, 1000]], [[160.02, 3000]], ticker="GAZP"),
    ]
    books.append(dict(books[3]))  # a duplicate snapshot is dropped
    write_case(
        "liquidity_1s",
        "last_snapshot_and_thin_books",
        {"orderbook": books},
        oracle.liquidity_1s(books),
    )


def rejects_cases() -> None:
    """Records that parse but lack what the job needs, one per reason, among good ones."""
    t = Trades()
    good = t.add("SBER", T0 + 100, 285.10, 10)
    t.add("SBER", T0 + 400, 285.20, 5)
    trades: list = list(t.rows)
    trades.append({k: v for k, v in good.items() if k != "event_id"})  # missing event_id
    trades.append({**good, "event_id": "X:T:1", "ticker": None})  # missing ticker
    trades.append({k: v for k, v in good.items() if k != "ts"} | {"event_id": "SBER:T:2"})
    trades.append({**good, "event_id": "SBER:T:3", "trade_id": None})
    trades.append({**good, "event_id": "SBER:T:4", "price": -1.5})
    trades.append({**good, "event_id": "SBER:T:5", "price": 0})
    trades.append({k: v for k, v in good.items() if k != "qty"} | {"event_id": "SBER:T:6"})
    trades.append({**good, "event_id": "SBER:T:7", "qty": 0})
    trades.append("this line is not JSON")  # a gap on a topic; nothing in a file
    books = [
        {"event_id": "SBER:B:1", "ticker": "SBER", "ts": T0 + 200, "seq": 1,
         "bids": [[285.0, 10]], "asks": [[285.1, 5]]},
        {"event_id": "SBER:B:2", "ticker": "SBER", "ts": T0 + 300,
         "bids": [[285.0, 10]], "asks": []},  # missing seq
        {"event_id": "SBER:B:3", "ticker": "SBER", "seq": 3, "bids": [], "asks": []},  # no ts
        {"event_id": "SBER:B:4", "ticker": "SBER", "ts": T0 + 600, "seq": 4, "asks": []},
    ]  # fmt: skip
    status = [
        {"event_id": "*:S:1", "ticker": "*", "ts": T0, "phase": "trading"},
        {"event_id": "*:S:2", "ticker": "*", "ts": T0 + 500},  # missing phase
    ]
    inputs = {"trades": trades, "orderbook": books, "market_status": status}
    write_case("input_rejects", "one_per_reason", inputs, oracle.input_rejects(inputs))


def tradestats_cases() -> None:
    """Two tickers with different lot sizes over two 5-minute windows: trades in one second
    written out of trade-number order, a second with one trade, a window with buys only (no
    pr_vwap_s), a window with a single trade (no pr_std), a producer retry, a boundary trade."""
    t = Trades()
    sides = []
    for offset, price, qty, trade_id, side in (
        (1_000, 285.10, 10, 501, "B"),
        (1_000, 285.00, 5, 500, "S"),  # same second, lower number: the window's open
        (2_500, 285.30, 7, 502, "B"),
        (2_700, 285.20, 3, 503, "S"),
        (4_100, 285.60, 20, 504, "B"),
        (61_000, 284.90, 12, 505, "S"),
        (299_999, 285.05, 4, 506, "B"),  # the last millisecond of the first window
        (300_000, 285.40, 6, 507, "B"),  # the next window: buys only
        (300_400, 285.50, 8, 508, "B"),
        (330_000, 285.45, 1, 509, "B"),
    ):
        t.add("SBER", T0 + offset, price, qty, trade_id=trade_id)
        sides.append(side)
    for offset, price, qty, trade_id, side in (
        (10_000, 75.12, 300, 700, "S"),
        (10_200, 75.10, 150, 701, "S"),
        (11_000, 75.15, 1000, 702, "B"),
        (200_000, 75.05, 50, 703, "S"),
        (420_000, 75.00, 10, 704, "B"),  # a window with one trade: pr_std is NULL
    ):
        t.add("VTBR", T0 + offset, price, qty, trade_id=trade_id)
        sides.append(side)
    for row, side in zip(t.rows, sides, strict=True):
        row["side"] = side
    rows: list = sorted(t.rows, key=lambda r: r["ts"])
    rows.append(dict(t.rows[2]))  # a producer retry: same event_id, dropped
    write_case(
        "tradestats_5m",
        "sides_lots_and_boundaries",
        {"trades": rows},
        algopack_reference.tradestats_5m(valid(rows)),
    )


def obstats_cases() -> None:
    """Deep SBER books (lot 10: 1 mio roubles is reached inside 10 levels, the last level in
    part), a thin one (no spread_lv10), one with no asks (no spreads), a duplicate; a VTBR book
    (lot 1) too shallow for 1 mio; two windows."""

    def book(seq: int, ts: int, bids: list, asks: list, ticker: str = "SBER") -> dict:
        return {"event_id": f"{ticker}:B:{seq}", "ticker": ticker, "ts": ts, "seq": seq,
                "bids": bids, "asks": asks}  # fmt: skip

    bids = [[285.00 - 0.01 * k, 40 + 5 * k] for k in range(10)]
    asks = [[285.03 + 0.01 * k, 30 + 7 * k] for k in range(10)]
    books = [
        book(1, T0 + 100, bids, asks),
        book(2, T0 + 1_100, [[285.01, 3]] + bids[:9], asks),
        book(3, T0 + 62_000, bids[:4], asks[:6]),  # thin: no 10th level, 1 mio not reached
        book(4, T0 + 299_999, bids, []),  # no asks
        book(5, T0 + 300_000, bids, asks),  # the next window
        book(1, T0 + 500, [[75.10, 900], [75.09, 1200]], [[75.12, 400], [75.13, 2000]], "VTBR"),
        book(2, T0 + 1_500, [[75.10, 20000]], [[75.12, 500], [75.13, 30000]], "VTBR"),
    ]
    books.append(dict(books[1]))  # a duplicate snapshot is dropped
    write_case(
        "obstats_5m",
        "depth_thin_books_and_one_mio",
        {"orderbook": books},
        algopack_reference.obstats_5m(books),
    )


def alerts_market() -> list[dict]:
    """Two tickers, 80 minutes of three small trades a minute, then: at minute 30 both sell 500
    lots (volume and net-volume alerts on two tickers in one minute), at 45 SBER jumps +3 %
    inside the minute, at 50 SBER has no trade (no 5-minute outcome of the jump), at 60 GAZP
    falls 3 %. The first 5 minutes are the warm-up; until the history is long the _max/_min
    types fire often, as documented."""
    rng = random.Random(14)
    t = Trades()
    for ticker, price in (("SBER", 285.0), ("GAZP", 130.0)):
        for minute in range(80):
            if ticker == "SBER" and minute == 50:
                continue
            for k, second in enumerate((5, 25, 45)):
                step = rng.choice((-0.02, -0.01, 0.0, 0.01, 0.02))
                if ticker == "SBER" and minute == 45 and k == 1:
                    step = round(price * 0.03, 2)
                if ticker == "GAZP" and minute == 60 and k == 1:
                    step = -round(price * 0.03, 2)
                price = round(price + step, 2)
                qty = 500 if minute == 30 else rng.randint(5, 15)
                row = t.add(ticker, T0 + minute * 60_000 + second * 1000 + rng.randint(0, 999),
                            price, qty)  # fmt: skip
                row["side"] = "S" if minute == 30 else rng.choice("BS")
    return sorted(t.rows, key=lambda r: r["ts"])


def alerts_cases() -> None:
    rows = alerts_market()
    trades = valid(rows)
    for output, rows_of in (
        ("alerts_1m", algopack_reference.alerts_1m),
        ("alerts_1m_outcomes", algopack_reference.alerts_1m_outcomes),
        ("alerts_1m_stats", algopack_reference.alerts_1m_stats),
    ):
        expected = algopack_reference.public(rows_of(trades))
        write_case(output, "surge_jump_gap_and_ties", {"trades": rows}, expected)


def main() -> None:
    rejects_cases()
    candles_cases()
    rolling_cases()
    indicators_cases()
    signals_cases()
    anomalies_cases()
    liquidity_cases()
    strategies_cases()
    tradestats_cases()
    obstats_cases()
    alerts_cases()
    for folder in sorted(HERE.glob("*/*/expected.jsonl")):
        count = len(folder.read_text().splitlines())
        print(f"{folder.parent.relative_to(HERE)}: {count} expected rows")


if __name__ == "__main__":
    main()
