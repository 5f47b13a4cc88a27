"""A synthetic TQBR market: trades, 10-level books and session phases, with injected anomalies.

The model, per instrument (reference data in producer/reference.py):
- A fair price F follows a random walk whose per-minute variance is GARCH(1,1) on the realised
  1-minute log return (volatility clustering). About a third of trades carry news and move F
  by a Gaussian step, scaled so that a minute's variance is the GARCH variance whatever the
  trade rate; the others trade at unchanged quotes, as on the real tape.
- Quotes sit on the tick grid around F: best bid = floor of F (in ticks) for a 1-tick spread,
  spread 1-3 ticks; quotes move only when F leaves [bid, ask]. Trades happen at the best ask
  (buy-initiated, "B") or best bid ("S"); the more F leans to the ask, the more buyers.
- Trades arrive as a Poisson process whose market-wide intensity follows an intraday U shape
  (busy open, quiet lunch, US-open bump at 16:30, busy close; the evening session is quieter),
  split among instruments by their activity weights. Sizes in lots are Pareto-tailed.
- A book snapshot (10 levels a side, 1 tick apart) is published before any trade whose quote
  differs from the last published one, and at most once a second when only sizes changed:
  every trade's price equals the best bid or ask of the latest snapshot of its ticker.
- The schedule is producer/schedule.py. No trades during auctions and closed periods; each
  auction ends with one uncross trade per instrument at its end time. An overnight gap moves F
  at each opening auction.
- Anomalies (rate per 1000 trades): spike_up / spike_down move F by 2.5-4.5 % over 2-8 s with
  10-16 extra trades, then 80 % of the move fades over minutes; volume bursts add 15-30 trades
  of 10-30x normal size over 3-8 s. Injected moves do not feed the GARCH variance. Each
  anomaly is reported to `on_anomaly` when complete (ground truth).

Everything random comes from one `random.Random(seed)`, and all times from the simulated
clock: the same seed and start give the same records, byte for byte.

Over 300 lines: the market model above is one simulation (price, quotes, tape, books, phases,
anomalies share its clock and random stream); split, the state would have to be passed around.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator
from decimal import Decimal
from heapq import heappop, heappush
from typing import Any

from producer.records import MARKET_WIDE, Book, Record, Status, Trade
from producer.reference import BOARD, INSTRUMENTS, Instrument
from producer.schedule import (
    EVENING_CLOSE,
    EVENING_OPEN,
    MAIN_CLOSE,
    MAIN_OPEN,
    msk_ms_of_day,
    next_transition,
    phase_at,
)

BOOK_LEVELS = 10
BOOK_REFRESH_MS = 1000  # size-only changes are published at most this often per ticker
FAIR_MOVE_P = 0.3  # share of trades that carry news (move the fair price)
MARKET_TRADES_PER_S = 50.0  # whole instrument set, scaled by intraday_activity (0.25-2.05)
TRADING_MINUTES_PER_DAY = (MAIN_CLOSE - MAIN_OPEN + EVENING_CLOSE - EVENING_OPEN) / 60_000
GARCH_ALPHA = 0.08
GARCH_BETA = 0.90
ANOMALY_COOLDOWN_MS = 60_000  # no two anomalies of one ticker closer than this
ANOMALY_KINDS = ("spike_up", "spike_down", "volume")
SPIKE_MIN_MOVE = 0.025  # > 2 % even after a spread's worth of bid/ask bounce
SPIKE_MAX_MOVE = 0.045
SPIKE_RETRACE = 0.8  # share of a spike given back afterwards...
SPIKE_FADE_MS = 180_000  # ...exponentially, over minutes (far below 2 % in any 10 s)
AUCTION_SIZE = (40, 120)  # uncross size, in units of the instrument's typical trade size
_INF = float("inf")


def intraday_activity(of_day_ms: int) -> float:
    """Relative trade intensity at a Moscow time of day (0 outside the two sessions)."""
    if MAIN_OPEN <= of_day_ms < MAIN_CLOSE:
        m = (of_day_ms - MAIN_OPEN) / 60_000
        end = (MAIN_CLOSE - MAIN_OPEN) / 60_000
        return (
            0.55
            + 1.5 * math.exp(-m / 25)
            + 0.8 * math.exp(-(end - m) / 40)
            + 0.35 * math.exp(-(((m - 390) / 25) ** 2))
        )
    if EVENING_OPEN <= of_day_ms < EVENING_CLOSE:
        return 0.25 + 0.25 * math.exp(-(of_day_ms - EVENING_OPEN) / 60_000 / 30)
    return 0.0


class _Anomaly:
    __slots__ = (
        "kind",
        "ticker",
        "ticker_index",
        "t0",
        "t1",
        "f0",
        "log_move",
        "qty_mult",
        "p_buy",
        "steps",
        "done",
        "start_ts",
        "start_price",
        "end_ts",
        "end_price",
    )

    def truth(self, complete: bool) -> dict[str, Any]:
        change = (self.end_price / self.start_price - 1) * 100 if self.start_price else 0
        return {
            "ticker": self.ticker,
            "kind": self.kind,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "start_price": self.start_price,
            "end_price": self.end_price,
            "change_pct": round(float(change), 3),
            "trades": self.done,
            "complete": complete,
        }


class _Instrument:
    """Mutable per-ticker state of the model."""

    __slots__ = (
        "inst",
        "ticker",
        "tick",
        "tick_f",
        "fair",
        "bid",
        "ask",
        "spread",
        "long_var",
        "var",
        "minute",
        "acc",
        "step_sd",
        "share",
        "qty_scale",
        "qty_cap",
        "profiles",
        "bid_q",
        "ask_q",
        "quote_changed",
        "sizes_changed",
        "last_book_ts",
        "seq",
        "prices",
        "level_prices",
        "anomaly",
        "cooldown_until",
        "excess",
        "excess_ts",
        "spread_cum",
    )

    def __init__(self, inst: Instrument, share: float, rng: random.Random, seq: int) -> None:
        self.inst = inst
        self.ticker = inst.ticker
        self.tick = inst.tick
        self.tick_f = float(inst.tick)
        self.fair = float(inst.ref_price) * math.exp(rng.gauss(0.0, 0.02))
        self.long_var = inst.daily_vol**2 / TRADING_MINUTES_PER_DAY  # per-minute variance
        self.var = self.long_var
        self.minute = -1
        self.acc = 0.0
        self.step_sd = 0.0
        self.share = share
        self.qty_scale = inst.mean_lots / 0.6  # Pareto(1.6) - 1 has mean 1/0.6
        self.qty_cap = int(inst.mean_lots * 200)
        # Quoted size per level grows with depth; a book draws one of these profiles per side.
        self.profiles = [
            [
                max(1, int(inst.mean_lots * 4 * (1 + 0.25 * level) * rng.lognormvariate(0, 0.7)))
                for level in range(BOOK_LEVELS)
            ]
            for _ in range(64)
        ]
        # Tight instruments (tick small against price) mostly quote a 1-tick spread.
        tick_bps = float(inst.tick) / float(inst.ref_price) * 1e4
        one = 0.9 if tick_bps < 0.5 else 0.75 if tick_bps < 1.5 else 0.6
        self.spread_cum = (one, one + (1 - one) * 0.7)  # P(1 tick), P(<= 2 ticks)
        self.spread = 1
        self.bid = self.ask = 0  # set by the first requote
        self.bid_q: list[int] = []
        self.ask_q: list[int] = []
        self.quote_changed = True
        self.sizes_changed = False
        self.last_book_ts = -_INF
        self.seq = seq
        self.prices: dict[int, Decimal] = {}
        self.level_prices: dict[int, tuple[Decimal, ...]] = {}
        self.anomaly: _Anomaly | None = None
        self.cooldown_until = -_INF
        self.excess = 0.0  # log distance of F from where a faded spike would leave it
        self.excess_ts = 0.0

    def levels(self, best: int, direction: int) -> tuple[Decimal, ...]:
        """Prices of the 10 levels from `best` (ticks) away from the spread, cached."""
        key = best * direction
        prices = self.level_prices.get(key)
        if prices is None:
            price = self.price
            prices = tuple(price(best + direction * n) for n in range(BOOK_LEVELS))
            self.level_prices[key] = prices
        return prices

    def price(self, ticks: int) -> Decimal:
        price = self.prices.get(ticks)
        if price is None:
            price = self.prices[ticks] = self.tick * ticks
        return price


class SyntheticMarket:
    """Iterate `records()` for an endless, deterministic stream of Trade, Book and Status."""

    def __init__(
        self,
        seed: int,
        start_ms: int,
        tickers: list[str] | None = None,
        anomaly_rate: float = 0.2,
        on_anomaly: Callable[[dict[str, Any]], None] | None = None,
        trades_per_s: float = MARKET_TRADES_PER_S,
    ) -> None:
        self.rng = rng = random.Random(seed)
        self.start_ms = start_ms
        names = tickers or list(INSTRUMENTS)
        total = sum(INSTRUMENTS[t].activity for t in names)
        # Trade and book numbers start from the start time (and a seeded offset) so that runs
        # over different days or seeds rarely reuse an event_id.
        self.trade_id = (start_ms // 1000) * 100 + rng.randrange(1_000_000_000)
        seq0 = (start_ms // 1000) * 100 + rng.randrange(1_000_000_000)
        self.instruments = [
            _Instrument(INSTRUMENTS[t], INSTRUMENTS[t].activity / total, rng, seq0) for t in names
        ]
        cumulative, acc = [], 0.0
        for s in self.instruments:
            acc += s.share
            cumulative.append(acc)
        cumulative[-1] = 1.0 + 1e-9  # never index past the end through rounding
        self._cumulative = cumulative
        self.anomaly_p = anomaly_rate / 1000.0
        self.on_anomaly = on_anomaly
        self.rate_per_ms = trades_per_s / 1000.0
        self._heap: list[tuple[float, int, _Anomaly]] = []
        self._heap_n = 0
        self.active: list[_Anomaly] = []

    # --- the event loop ------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        rng = self.rng
        expovariate, random_ = rng.expovariate, rng.random
        heap, cumulative, instruments = self._heap, self._cumulative, self.instruments
        t = float(self.start_ms)
        phase = phase_at(self.start_ms)
        yield Status(MARKET_WIDE, self.start_ms, phase)
        switch_at, next_phase = next_transition(self.start_ms)
        # The intensity is re-read every second of simulated time, not at every arrival.
        rate_until = -_INF
        rate = 0.0
        while True:
            if phase == "trading":
                if t >= rate_until:
                    rate_until = (t // 1000 + 1) * 1000
                    rate = self.rate_per_ms * intraday_activity(msk_ms_of_day(int(t)))
                arrival = t + expovariate(rate) if rate > 0 else _INF
            else:
                arrival = _INF
            scheduled = heap[0][0] if heap else _INF
            if switch_at <= arrival and switch_at <= scheduled:
                t = float(switch_at)
                yield from self._switch(switch_at, phase, next_phase)
                phase = next_phase
                switch_at, next_phase = next_transition(switch_at)
                rate_until = -_INF
                continue
            if scheduled <= arrival:
                t = scheduled
                _, _, anomaly = heappop(heap)
                s = instruments[anomaly.ticker_index]
            else:
                t = arrival
                s = instruments[bisect(cumulative, random_())]
                anomaly = None
            book, trade = self._trade(s, t)
            if book is not None:
                yield book
            yield trade
            if anomaly is not None:
                self._anomaly_step(anomaly, trade)
            elif self.anomaly_p and random_() < self.anomaly_p:
                self._maybe_start_anomaly(s, t, switch_at)

    def _trade(
        self, s: _Instrument, t: float, qty: int = 0, side: str = ""
    ) -> tuple[Book | None, Trade]:
        rng = self.rng
        ts = int(t)
        minute = ts // 60_000
        if minute != s.minute:
            self._roll_minute(s, minute, t)
        anomaly = s.anomaly
        if anomaly is not None and anomaly.log_move:
            progress = (t - anomaly.t0) / (anomaly.t1 - anomaly.t0)
            progress = 0.0 if progress < 0 else 1.0 if progress > 1 else progress
            # Injected moves stay out of the GARCH input (s.acc): they are not organic news.
            s.fair = anomaly.f0 * math.exp(anomaly.log_move * progress)
        else:
            if s.excess:  # a past spike fades: F drifts back toward where it came from
                left = s.excess * math.exp((s.excess_ts - t) / SPIKE_FADE_MS)
                s.fair *= math.exp(left - s.excess)
                s.excess = left if abs(left) > 1e-5 else 0.0
                s.excess_ts = t
            if rng.random() < FAIR_MOVE_P:
                step = s.step_sd * rng.gauss(0.0, 1.0)
                s.fair *= math.exp(step)
                s.acc += step
        x = s.fair / s.tick_f
        if x < s.bid or x > s.ask or s.quote_changed:
            self._requote(s, x)
        book = None
        if s.quote_changed or (s.sizes_changed and t - s.last_book_ts >= BOOK_REFRESH_MS):
            book = self._book(s, ts)
        if not side:
            if anomaly is not None and anomaly.p_buy:
                p_buy = anomaly.p_buy
            else:
                p_buy = 0.2 + 0.6 * (x - s.bid) / (s.ask - s.bid)
            side = "B" if rng.random() < p_buy else "S"
        if not qty:
            qty = 1 + int(s.qty_scale * (rng.paretovariate(1.6) - 1.0))
            if qty > s.qty_cap:
                qty = s.qty_cap
            if anomaly is not None and anomaly.qty_mult and t >= anomaly.t0:
                qty *= anomaly.qty_mult
        if side == "B":
            price_ticks = s.ask
            left = s.ask_q[0] - qty
            s.ask_q[0] = left if left > 0 else s.profiles[rng.getrandbits(6)][0]
        else:
            price_ticks = s.bid
            left = s.bid_q[0] - qty
            s.bid_q[0] = left if left > 0 else s.profiles[rng.getrandbits(6)][0]
        s.sizes_changed = True
        self.trade_id += 1 + rng.getrandbits(1)  # other boards take numbers in between
        return book, Trade(s.ticker, BOARD, self.trade_id, ts, s.price(price_ticks), qty, side)

    def _roll_minute(self, s: _Instrument, minute: int, t: float) -> None:
        """GARCH(1,1) on the 1-minute log return just completed, then the per-trade step."""
        if s.minute >= 0:
            long_var = s.long_var
            var = long_var * (1 - GARCH_ALPHA - GARCH_BETA) + GARCH_ALPHA * s.acc**2
            var += GARCH_BETA * s.var
            skipped = minute - s.minute - 1  # minutes without a trade decay toward the mean
            if skipped > 0:
                var = long_var + (GARCH_ALPHA + GARCH_BETA) ** min(skipped, 10_000) * (
                    var - long_var
                )
            s.var = min(max(var, 0.25 * long_var), 8.0 * long_var)
        s.minute = minute
        s.acc = 0.0
        per_minute = self.rate_per_ms * intraday_activity(msk_ms_of_day(int(t))) * s.share * 60_000
        # Only a FAIR_MOVE_P share of trades moves F, by a bigger step: the same variance,
        # and runs of trades at one price as on the real tape.
        s.step_sd = math.sqrt(s.var / max(per_minute * FAIR_MOVE_P, 1.0))

    def _requote(self, s: _Instrument, x: float) -> None:
        rng = self.rng
        u = rng.random()
        spread = 1 if u < s.spread_cum[0] else 2 if u < s.spread_cum[1] else 3
        bid = int(x - (spread - 1) * 0.5)
        if bid < BOOK_LEVELS:  # keep every level's price positive
            bid = BOOK_LEVELS
        s.spread = spread
        s.bid, s.ask = bid, bid + spread
        s.bid_q = list(s.profiles[rng.getrandbits(6)])
        s.ask_q = list(s.profiles[rng.getrandbits(6)])
        s.quote_changed = True

    def _book(self, s: _Instrument, ts: int) -> Book:
        s.seq += 1
        s.quote_changed = s.sizes_changed = False
        s.last_book_ts = ts
        return Book(
            s.ticker,
            ts,
            s.seq,
            tuple(zip(s.levels(s.bid, -1), s.bid_q, strict=True)),
            tuple(zip(s.levels(s.ask, 1), s.ask_q, strict=True)),
        )

    # --- session phases ------------------------------------------------------------------

    def _switch(self, ts: int, old: str, new: str) -> Iterator[Record]:
        rng = self.rng
        if new == "opening_auction":
            for s in self.instruments:  # overnight news: the open gaps away from the close
                s.fair *= math.exp(rng.gauss(0.0, 0.6 * s.inst.daily_vol))
                s.quote_changed = True
        if old in ("opening_auction", "closing_auction"):
            for s in self.instruments:  # the auction's uncross: one large trade each
                s.quote_changed = True
                size = int(s.inst.mean_lots * rng.uniform(*AUCTION_SIZE)) + 1
                book, trade = self._trade(s, float(ts), qty=size, side=rng.choice("BS"))
                if book is not None:
                    yield book
                yield trade
        yield Status(MARKET_WIDE, ts, new)

    # --- anomalies -----------------------------------------------------------------------

    def _maybe_start_anomaly(self, s: _Instrument, t: float, switch_at: int) -> None:
        rng = self.rng
        kind = ANOMALY_KINDS[0 if (u := rng.random()) < 0.4 else 1 if u < 0.8 else 2]
        duration = rng.uniform(2000, 8000) if kind != "volume" else rng.uniform(3000, 8000)
        t0 = t + 50.0
        t1 = t0 + duration
        if s.anomaly is not None or t < s.cooldown_until or t1 + 1000 >= switch_at:
            return
        a = _Anomaly()
        a.kind, a.ticker = kind, s.ticker
        a.ticker_index = self.instruments.index(s)
        a.t0, a.t1, a.f0 = t0, t1, s.fair
        a.done, a.start_ts, a.start_price, a.end_ts, a.end_price = 0, None, None, None, None
        if kind == "volume":
            a.log_move, a.qty_mult, a.p_buy = 0.0, rng.randint(10, 30), 0.0
            a.steps = rng.randint(15, 30)
        else:
            move = rng.uniform(SPIKE_MIN_MOVE, SPIKE_MAX_MOVE)
            up = kind == "spike_up"
            a.log_move = math.log1p(move if up else -move)
            a.qty_mult, a.p_buy = 0, (0.85 if up else 0.15)
            a.steps = rng.randint(10, 16)
        s.anomaly = a
        s.cooldown_until = t1 + ANOMALY_COOLDOWN_MS
        self.active.append(a)
        for n in range(a.steps):
            self._heap_n += 1
            heappush(self._heap, (t0 + duration * n / (a.steps - 1), self._heap_n, a))

    def _anomaly_step(self, a: _Anomaly, trade: Trade) -> None:
        a.done += 1
        if a.start_ts is None:
            a.start_ts, a.start_price = trade.ts, trade.price
        a.end_ts, a.end_price = trade.ts, trade.price
        if a.done == a.steps:
            s = self.instruments[a.ticker_index]
            s.anomaly = None
            if a.log_move:
                s.excess, s.excess_ts = a.log_move * SPIKE_RETRACE, float(trade.ts)
            self.active.remove(a)
            if self.on_anomaly is not None:
                self.on_anomaly(a.truth(complete=True))

    def unfinished_anomalies(self) -> list[dict[str, Any]]:
        """Anomalies cut short by the end of the run, marked complete=false."""
        return [a.truth(complete=False) for a in self.active if a.start_ts is not None]
