"""A generated market with known injected events, for the detection tests.

Several tickers trade for hours with a few trades a minute, some minutes and one long stretch
without trades (gaps), trend regimes that make the EMAs cross, price jumps of 3-4 % inside
dense stretches of one trade a second (spikes), and minutes with 100 times the usual volume.
Per-trade noise is tiny (0.01 %), so no 2 % move within 10 s happens except the injected ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

T0 = 1764140400000  # 2025-11-26 07:00:00 UTC


@dataclass
class Market:
    trades: list[dict] = field(default_factory=list)
    jumps: list[tuple[str, str, int]] = field(default_factory=list)  # ticker, kind, ts of the jump
    surges: list[tuple[str, int]] = field(default_factory=list)  # ticker, minute start ms
    reversals: list[tuple[str, int]] = field(default_factory=list)  # ticker, minute start ms


def generate(
    seed: int = 7, minutes: int = 420, tickers: tuple[str, ...] = ("SBER", "GAZP", "LKOH")
) -> Market:
    rng = random.Random(seed)
    market = Market()
    trade_id = 10_000_000
    for number, ticker in enumerate(tickers):
        price = (285.0, 160.0, 7000.0)[number % 3] * (1 + 0.1 * (number // 3))
        gap = range(200 + 20 * number, 230 + 20 * number)  # half an hour without trades
        jump_minutes = {
            m: rng.choice((-1, 1)) * rng.uniform(0.03, 0.04)
            for m in rng.sample(range(20, minutes - 5), 6)
            if m not in gap
        }
        # A surge is measured against the previous 20 candles: none of them may be a dense
        # jump minute (its volume would raise the baseline) or missing in the gap.
        surge_minutes = {
            m
            for m in rng.sample(range(40, minutes), 4)
            if not any(k in gap or k in jump_minutes for k in range(m - 21, m + 1))
        }
        drift, regime_end = 0.0, 0
        for minute in range(minutes):
            if minute >= regime_end:
                drift = rng.choice((-1, 1)) * rng.uniform(0.0008, 0.002)
                regime_end = minute + rng.randint(25, 60)
                market.reversals.append((ticker, T0 + minute * 60_000))
            if minute in gap or rng.random() < 0.05:
                continue
            base = T0 + minute * 60_000
            if minute in jump_minutes:
                seconds = list(range(10, 50))  # one trade a second around the jump at :30
            else:
                seconds = sorted(rng.sample(range(60), rng.randint(1, 4)))
            qty_scale = 100 if minute in surge_minutes else 1
            if minute in surge_minutes:
                market.surges.append((ticker, base))
            for second in seconds:
                ts = base + second * 1000 + rng.randint(0, 999)
                if minute in jump_minutes and second == 30:
                    size = jump_minutes[minute]
                    price *= 1 + size
                    market.jumps.append((ticker, "spike_up" if size > 0 else "spike_down", ts))
                price *= 1 + drift / max(len(seconds), 1) + rng.gauss(0, 0.0001)
                trade_id += rng.randint(1, 50)
                market.trades.append(
                    {
                        "event_id": f"{ticker}:T:{trade_id}",
                        "ticker": ticker,
                        "board": "TQBR",
                        "trade_id": trade_id,
                        "ts": ts,
                        "price": round(price, 2),
                        "qty": rng.randint(1, 20) * qty_scale,
                        "side": rng.choice("BS"),
                    }
                )
    market.trades.sort(key=lambda t: (t["ts"], t["trade_id"]))
    return market
