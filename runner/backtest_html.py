"""The backtest's offline HTML report (DIR/report.html, plotly.js inlined): per strategy its
statistics, per ticker the candles with the strategy's fills and indicators, equity and
drawdown, and the portfolio; the numbers come from runner/backtest_report.py.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from runner.backtest_report import PORTFOLIO, Book, Trade, books_of, parse_time


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        value = value or 0.0  # no "-0" for a drawdown of nothing
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return html.escape(str(value))


def _stats_table(books: list[Book]) -> str:
    keys = list(books[0].stats)
    head = "".join(f"<th>{'Portfolio' if b.ticker == PORTFOLIO else b.ticker}</th>" for b in books)
    body = "".join(
        f"<tr><th>{html.escape(k)}</th>"
        + "".join(f"<td>{fmt(b.stats.get(k))}</td>" for b in books)
        + "</tr>"
        for k in keys
    )
    return f"<table class='stats'><tr><th></th>{head}</tr>{body}</table>"


def _trades_table(trades: list[Trade]) -> str:
    if not trades:
        return "<p>No trades.</p>"
    head = (
        "<tr><th>Ticker</th><th>Lots</th><th>Shares</th><th>Entry (candle end)</th>"
        "<th>Entry price</th><th>Exit (candle end)</th><th>Exit price</th>"
        "<th>Commission</th><th>P&amp;L [RUB]</th><th>Return [%]</th></tr>"
    )
    rows = []
    for t in trades:
        ret = None if t.return_pct is None else 100 * t.return_pct
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{fmt(v)}</td>"
                for v in (
                    t.ticker,
                    t.lots,
                    t.size,
                    t.entry_time,
                    t.entry_price,
                    t.exit_time or "open",
                    t.exit_price,
                    t.commission,
                    t.pnl,
                    ret,
                )
            )
            + "</tr>"
        )
    return f"<table class='trades'>{head}{''.join(rows)}</table>"


def _ticker_figure(book: Book, candles: list[dict], indicators: list[dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        row_heights=[0.5, 0.15, 0.2, 0.15],
        subplot_titles=("Price, entries ▲ and exits ▼", "RSI(14)", "Equity [RUB]", "Drawdown [%]"),
    )
    # Candles are drawn at their start, as charting tools do; fills at the open of the candle
    # that filled them, i.e. at that candle's start.
    starts = [c["window_start"] for c in candles]
    fig.add_trace(
        go.Candlestick(
            x=starts,
            open=[float(c["open"]) for c in candles],
            high=[float(c["high"]) for c in candles],
            low=[float(c["low"]) for c in candles],
            close=[float(c["close"]) for c in candles],
            name="1-min candles",
        ),
        row=1,
        col=1,
    )
    ind_x = [_start_of(i["window_end"]) for i in indicators]
    for name, colour in (
        ("ema_12", "#1f77b4"),
        ("ema_26", "#ff7f0e"),
        ("bb_upper", "#999"),
        ("bb_mid", "#bbb"),
        ("bb_lower", "#999"),
    ):
        fig.add_trace(
            go.Scatter(
                x=ind_x,
                y=[i.get(name) for i in indicators],
                name=name,
                mode="lines",
                line={"width": 1, "color": colour},
            ),
            row=1,
            col=1,
        )
    for side, symbol, colour in ((1, "triangle-up", "green"), (-1, "triangle-down", "red")):
        fills = [r for r in book.rows if (r.get("fill_lots") or 0) * side > 0]
        fig.add_trace(
            go.Scatter(
                x=[_start_of(r["window_end"]) for r in fills],
                y=[r["fill_price"] for r in fills],
                mode="markers",
                name="entry" if side > 0 else "exit",
                marker={"symbol": symbol, "size": 11, "color": colour},
                text=[f"{r['fill_lots']:+d} lots" for r in fills],
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(x=ind_x, y=[i.get("rsi_14") for i in indicators], name="rsi_14"), row=2, col=1
    )
    _equity_traces(fig, book, row=3)
    fig.update_layout(height=900, xaxis_rangeslider_visible=False, margin={"t": 40, "b": 20})
    return fig


def _equity_traces(fig, book: Book, row: int) -> None:
    import plotly.graph_objects as go

    x = [_start_of(r["window_end"]) for r in book.rows]
    fig.add_trace(
        go.Scatter(x=x, y=[r["equity"] for r in book.rows], name="equity"), row=row, col=1
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[-100 * r["drawdown"] for r in book.rows],
            name="drawdown",
            fill="tozeroy",
            line={"color": "crimson"},
        ),
        row=row + 1,
        col=1,
    )


def _portfolio_figure(book: Book):
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        row_heights=[0.7, 0.3],
        subplot_titles=("Portfolio equity [RUB]", "Drawdown [%]"),
    )
    _equity_traces(fig, book, row=1)
    fig.update_layout(height=450, margin={"t": 40, "b": 20})
    return fig


def _start_of(window_end: str) -> str:
    return (parse_time(window_end) - timedelta(minutes=1)).isoformat()


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; }
table.stats th:first-child { text-align: left; }
nav a { margin-right: 1em; }
"""


def write_report(
    out: Path,
    strategies: dict[str, list[dict]],
    candles: list[dict],
    indicators: list[dict],
    settings_note: str,
) -> Path:
    """DIR/report.html: one section per strategy, per ticker and the portfolio; offline."""
    from plotly.offline import get_plotlyjs

    candles_by = defaultdict(list)
    for c in sorted(candles, key=lambda c: c["window_end"]):
        candles_by[c["ticker"]].append(c)
    indicators_by = defaultdict(list)
    for i in sorted(indicators, key=lambda i: i["window_end"]):
        indicators_by[i["ticker"]].append(i)
    parts = []
    nav = []
    for name, rows in strategies.items():
        books = books_of(rows)
        nav.append(f"<a href='#{name}'>{name}</a>")
        parts.append(f"<h1 id='{name}'>{html.escape(name)}</h1>")
        if not books:
            parts.append("<p>No candles: nothing to trade.</p>")
            continue
        parts.append("<h2>Statistics</h2>" + _stats_table(books))
        for book in books:
            if book.ticker == PORTFOLIO:
                parts.append("<h2>Portfolio</h2>")
                fig = _portfolio_figure(book)
            else:
                parts.append(f"<h2>{html.escape(book.ticker)}</h2>")
                fig = _ticker_figure(book, candles_by[book.ticker], indicators_by[book.ticker])
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
            if book.ticker != PORTFOLIO:
                parts.append("<h3>Trades</h3>" + _trades_table(book.trades))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Backtest report</title>"
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<p><b>Backtest</b> — {html.escape(settings_note)}</p><nav>{''.join(nav)}</nav>"
        + "".join(parts)
        + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page)
    return path
