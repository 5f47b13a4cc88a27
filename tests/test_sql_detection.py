"""Detection on a generated market with known injected events, through the real job (replay).

One replay of ~3,300 trades over 7 hours and 3 tickers (with gaps; over 300 candles per
ticker, so the 300-candle UDAF windows are exercised) feeds every test here:
indicators against TA-Lib on the full history, crossovers and RSI crossings against a brute
force oracle, price spikes against the injected jumps, volume surges against exact arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import talib

from runner import replay
from runner.settings import Settings
from tests.golden import oracle, synthetic

pytestmark = pytest.mark.flink

OUTPUTS = ["indicators_1m", "signals", "anomalies"]


@pytest.fixture(scope="module")
def market() -> synthetic.Market:
    return synthetic.generate(seed=7)


@pytest.fixture(scope="module")
def replayed(market: synthetic.Market, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("detection")
    trades = folder / "trades.jsonl"
    trades.write_text("".join(json.dumps(t) + "\n" for t in market.trades))
    settings = Settings()
    settings.only = OUTPUTS
    result = replay.run(settings, trades, folder / "out")
    return {name: result.rows(name) for name in OUTPUTS}


def test_indicators_when_long_series_with_gaps_then_match_talib_within_1e_6_relative(
    market: synthetic.Market, replayed: dict
) -> None:
    closes_by_ticker: dict[str, list[tuple[str, float]]] = {}
    for bar in oracle.bars(oracle.valid_trades(market.trades), 60_000):
        closes_by_ticker.setdefault(bar.ticker, []).append((oracle.iso(bar.end), float(bar.close)))
    worst = 0.0
    for ticker, series in closes_by_ticker.items():
        assert len(series) > 300, "the series must be longer than the UDAF window"
        rows = {r["window_end"]: r for r in replayed["indicators_1m"] if r["ticker"] == ticker}
        assert sorted(rows) == [end for end, _ in series]
        closes = np.array([c for _, c in series])
        macd, signal, hist = talib.MACD(closes, 12, 26, 9)
        upper, middle, lower = talib.BBANDS(closes, 20, 2, 2)
        expected = {
            "sma_20": talib.SMA(closes, 20),
            "ema_12": talib.EMA(closes, 12),
            "ema_26": talib.EMA(closes, 26),
            "rsi_14": talib.RSI(closes, 14),
            "macd": macd,
            "macd_signal": signal,
            "macd_hist": hist,
            "bb_mid": middle,
            "bb_upper": upper,
            "bb_lower": lower,
        }
        for column, values in expected.items():
            for (end, _), want in zip(series, values, strict=True):
                got = rows[end][column]
                if math.isnan(want):
                    assert got is None, f"{ticker} {end} {column}: {got} before warm-up"
                    continue
                # Relative, except near zero (RSI of a long slide, MACD at a crossing), where
                # 1e-6 of the value is below what the 300-candle window can promise: there
                # the bound is 1e-6 absolute (RSI is 0..100, MACD in roubles).
                error = abs(got - want) / max(abs(want), 1.0)
                worst = max(worst, error)
                assert error <= 1e-6, f"{ticker} {end} {column}: {got} vs TA-Lib {want}"
    print(f"worst relative error against TA-Lib: {worst:.1e}")


def test_signals_when_generated_market_then_same_as_bruteforce_oracle(
    market: synthetic.Market, replayed: dict
) -> None:
    expected = {
        (s["ticker"], s["kind"], s["ts"])
        for s in oracle.signals(oracle.valid_trades(market.trades))
    }
    found = {(s["ticker"], s["kind"], s["ts"]) for s in replayed["signals"]}
    crosses = {e for e in expected if e[1].endswith("cross")}
    assert len(crosses) >= 10 and len(expected - crosses) >= 5, "the market must make signals"
    assert found - expected == set(), "false positives (precision < 100 %)"
    assert expected - found == set(), "missed signals (recall < 100 %)"
    for s in replayed["signals"]:
        assert s["event_id"] == f"{s['ticker']}:{s['kind']}:{oracle._ms(s['ts'])}"


def test_crossovers_when_trend_reverses_then_a_cross_follows(
    market: synthetic.Market, replayed: dict
) -> None:
    crosses = [s for s in replayed["signals"] if s["kind"].endswith("cross")]
    # Every regime change after warm-up that flips the trend is followed by a cross within
    # its regime; at least most of them (a short regime may not flip the EMAs).
    followed = 0
    reversals = [r for r in market.reversals if r[1] >= synthetic.T0 + 30 * 60_000]
    for ticker, start in reversals:
        if any(
            c["ticker"] == ticker and 0 <= oracle._ms(c["ts"]) - start <= 60 * 60_000
            for c in crosses
        ):
            followed += 1
    assert followed >= len(reversals) // 2


def test_spikes_when_jumps_injected_then_each_found_once_and_nothing_else(
    market: synthetic.Market, replayed: dict
) -> None:
    spikes = [a for a in replayed["anomalies"] if a["kind"].startswith("spike")]
    unmatched = list(spikes)
    for ticker, kind, ts in market.jumps:
        hits = [
            s
            for s in spikes
            if s["ticker"] == ticker
            and s["kind"] == kind
            and oracle._ms(s["start_ts"]) <= ts < oracle._ms(s["end_ts"])
        ]
        assert len(hits) == 1, f"jump {ticker} {kind} at {oracle.iso(ts)}: found {hits}"
        unmatched.remove(hits[0])
    assert unmatched == [], "spikes without an injected jump (precision < 100 %)"
    for s in spikes:
        assert oracle._ms(s["end_ts"]) - oracle._ms(s["start_ts"]) <= 11_000
        assert abs(s["change_pct"]) > 2
        up = s["kind"] == "spike_up"
        assert (s["end_price"] > s["start_price"]) == up
        assert s["volume"] is None and s["volume_mean"] is None
    # The same rows as the brute-force scan of the bars, field by field.
    expected = oracle.spikes(oracle.valid_trades(market.trades))
    key = lambda a: (a["ticker"], a["kind"], a["start_ts"], a["end_ts"])  # noqa: E731
    assert sorted(map(key, spikes)) == sorted(map(key, expected))
    by_key = {key(a): a for a in expected}
    for s in spikes:
        want = by_key[key(s)]
        assert math.isclose(s["start_price"], float(want["start_price"]))
        assert math.isclose(s["end_price"], float(want["end_price"]))


def test_volume_anomalies_when_surges_injected_then_found_and_exactly_the_3_sigma_rule(
    market: synthetic.Market, replayed: dict
) -> None:
    found = {
        (a["ticker"], oracle._ms(a["start_ts"]))
        for a in replayed["anomalies"]
        if a["kind"] == "volume"
    }
    assert set(market.surges) <= found, "an injected volume surge was missed"
    expected = {
        (a["ticker"], oracle._ms(a["start_ts"]))
        for a in oracle.volume_surges(oracle.valid_trades(market.trades))
    }
    assert found == expected


def test_replay_when_run_twice_then_outputs_are_identical(
    market: synthetic.Market, replayed: dict, tmp_path: Path
) -> None:
    trades = tmp_path / "trades.jsonl"
    # The same trades in another file order: replay sorts by ts, so the output is the same.
    trades.write_text("".join(json.dumps(t) + "\n" for t in reversed(market.trades)))
    settings = Settings()
    settings.only = ["anomalies"]
    again = replay.run(settings, trades, tmp_path / "out")
    assert again.rows("anomalies") == replayed["anomalies"]
