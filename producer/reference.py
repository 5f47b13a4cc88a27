"""Reference data of the TQBR instruments the platform knows: tick grid, lot, decimals, activity.

Values follow the ISS `securities` block (MINSTEP, LOTSIZE, DECIMALS) as of late 2025; the
price levels, activity weights and volatilities are typical figures used only by the synthetic
model. A record whose ticker is not in this table is rejected: its tick grid is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

BOARD = "TQBR"


@dataclass(frozen=True)
class Instrument:
    ticker: str
    name: str
    tick: Decimal  # MINSTEP, RUB; its exponent equals -DECIMALS, so tick * n prints right
    lot: int  # LOTSIZE: shares per lot; every qty on our topics is in lots
    decimals: int  # DECIMALS: digits after the point in every printed price
    ref_price: Decimal  # typical price level, RUB per share (synthetic start price)
    activity: float  # relative number of trades per unit of time (synthetic)
    daily_vol: float  # typical daily standard deviation of log returns (synthetic)
    mean_lots: float  # typical size of one trade, lots (synthetic)

    @property
    def quantum(self) -> Decimal:
        """Decimal with exactly `decimals` digits, for Decimal.quantize."""
        return Decimal(1).scaleb(-self.decimals)


def _instrument(
    ticker: str,
    name: str,
    tick: str,
    lot: int,
    decimals: int,
    ref_price: str,
    activity: float,
    daily_vol: float,
    mean_lots: float,
) -> Instrument:
    step = Decimal(tick)
    if step.as_tuple().exponent != -decimals:
        raise ValueError(f"{ticker}: tick {tick} does not have {decimals} decimals")
    return Instrument(
        ticker, name, step, lot, decimals, Decimal(ref_price), activity, daily_vol, mean_lots
    )


# ticker, name, MINSTEP, LOTSIZE, DECIMALS, price level, activity, daily vol, lots per trade
INSTRUMENTS: dict[str, Instrument] = {
    i.ticker: i
    for i in (
        _instrument("SBER", "Сбербанк", "0.01", 10, 2, "300.00", 30.0, 0.015, 12),
        _instrument("GAZP", "Газпром", "0.01", 10, 2, "130.00", 16.0, 0.018, 25),
        _instrument("VTBR", "ВТБ", "0.01", 1, 2, "75.00", 12.0, 0.020, 120),
        _instrument("LKOH", "Лукойл", "0.5", 1, 1, "6800.0", 8.0, 0.014, 4),
        _instrument("YDEX", "Яндекс", "0.5", 1, 1, "4000.0", 8.0, 0.020, 6),
        _instrument("GMKN", "Норникель", "0.02", 10, 2, "120.00", 6.0, 0.019, 20),
        _instrument("ROSN", "Роснефть", "0.05", 1, 2, "450.00", 5.0, 0.016, 30),
        _instrument("NVTK", "Новатэк", "0.2", 1, 1, "1000.0", 4.0, 0.019, 12),
        _instrument("TATN", "Татнефть", "0.1", 1, 1, "650.0", 4.0, 0.016, 20),
        _instrument("MGNT", "Магнит", "0.5", 1, 1, "4500.0", 3.0, 0.018, 4),
        _instrument("PLZL", "Полюс", "0.2", 1, 1, "2000.0", 3.0, 0.021, 8),
        _instrument("SNGS", "Сургутнефтегаз", "0.005", 100, 3, "23.000", 4.0, 0.014, 60),
    )
}


def instrument(ticker: str) -> Instrument | None:
    return INSTRUMENTS.get(ticker)


def parse_tickers(text: str) -> list[str]:
    """`SBER,GAZP` -> ["SBER", "GAZP"]; unknown or repeated tickers raise ValueError."""
    tickers = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not tickers:
        raise ValueError("no tickers given")
    unknown = [t for t in tickers if t not in INSTRUMENTS]
    if unknown:
        raise ValueError(f"unknown ticker(s) {', '.join(unknown)}; known: {', '.join(INSTRUMENTS)}")
    if len(set(tickers)) != len(tickers):
        raise ValueError(f"repeated ticker in {text!r}")
    return tickers
