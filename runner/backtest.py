"""Backtest: replay files through one or more strategies and write their P&L and a report.

    python -m runner backtest --strategy NAME[,NAME...|all] --trades F [--orderbook F] --out DIR

A strategy is an output under sql/strategies/ (see docs/backtest.md). The replay runs the same
job as live (runner/replay.py) limited to the strategies, candles_1m and indicators_1m, and
writes DIR/<strategy>.jsonl (fills, position, cash, equity and drawdown per candle and ticker,
`*` for the portfolio, as on the strategy's topic), DIR/<strategy>_trades.jsonl (round trips)
and DIR/report.html (self-contained: plotly.js inlined, opens offline).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner import backtest_html, backtest_report, replay, validation
from runner.errors import java_message
from runner.plan import PlanError
from runner.replay_progress import LineCounter
from runner.settings import Settings
from runner.sqlfiles import discover, load

STRATEGY_FOLDER = "strategies"
CONTEXT = ("candles_1m", "indicators_1m")  # what the report draws besides the strategy rows


class BacktestError(Exception):
    pass


def strategies(settings: Settings) -> list[str]:
    """Names of the strategy outputs: files under sql/strategies/ that create their sink."""
    folder = settings.sql_dir / STRATEGY_FOLDER
    return [p.stem for p in discover(folder) if load(p).is_output] if folder.exists() else []


def select(settings: Settings, spec: str) -> list[str]:
    known = strategies(settings)
    if spec.strip() == "all":
        return known
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise BacktestError(
            f"unknown strategy {', '.join(unknown) or repr(spec)}; "
            f"known: {', '.join(known) or 'none'} (files in {settings.sql_dir / STRATEGY_FOLDER})"
        )
    return names


@dataclass
class BacktestResult:
    out_dir: Path
    replay: replay.ReplayResult
    report: Path
    books: dict[str, list[backtest_report.Book]] = field(default_factory=dict)


class Progress:
    """Prints, every few seconds while the job runs, how long it has run and how many strategy
    rows its sinks have written so far (the part files of DIR/.replay/parts/)."""

    def __init__(self, parts: Path, names: list[str], say: Callable[[str], None], every: float):
        self.counters = [LineCounter(parts / name) for name in names]
        self.say, self.every = say, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _rows(self) -> int:
        return sum(counter.count() for counter in self.counters)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            elapsed = time.monotonic() - self.started
            rows = self._rows()
            state = f"{rows:,} strategy rows written" if rows else "planning or warming up"
            self.say(f"backtest: {elapsed:5.0f} s, {state}")

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def run(
    settings: Settings,
    names: list[str],
    trades: Path,
    out_dir: Path,
    orderbook: Path | None = None,
    status: Path | None = None,
    say: Callable[[str], None] = print,
    progress_every: float = 5.0,
) -> BacktestResult:
    settings = settings.model_copy(update={"only": [*names, *CONTEXT]})
    out_dir = Path(out_dir)
    say(
        f"backtest: {', '.join(names)} on {trades} (commission {settings.strategy_commission:g}, "
        f"slippage {settings.strategy_slippage:g}, capital {settings.strategy_capital:,.0f} RUB "
        "per ticker)"
    )
    with Progress(out_dir / ".replay" / "parts", names, say, progress_every):
        result = replay.run(settings, trades, out_dir, orderbook, status)
    say(
        f"backtest: replayed {result.input_counts.get('trades', 0):,} trades in "
        f"{result.seconds:.1f} s (planning {result.plan_seconds:.1f} s, job {result.run_seconds:.1f} s)"
    )
    rows = {name: result.rows(name) for name in names}
    books = {}
    for name in names:
        books[name] = backtest_report.books_of(rows[name])
        backtest_report.write_trades(out_dir / f"{name}_trades.jsonl", books[name])
    note = (
        f"{', '.join(names)} on {trades.name}; fills at the next candle's open; commission "
        f"{settings.strategy_commission:g}, slippage {settings.strategy_slippage:g}, capital "
        f"{settings.strategy_capital:,.0f} RUB per ticker"
    )
    report = backtest_html.write_report(
        out_dir, rows, result.rows("candles_1m"), result.rows("indicators_1m"), note
    )
    return BacktestResult(out_dir, result, report, books)


def summary_lines(result: BacktestResult) -> list[str]:
    lines = []
    for name, books in result.books.items():
        lines.append(f"  {name}")
        for book in books:
            s = book.stats
            label = "portfolio" if book.ticker == backtest_report.PORTFOLIO else book.ticker
            lines.append(
                f"    {label:<9} return {s['Return [%]']:+7.3f} %  buy&hold "
                f"{s['Buy & Hold Return [%]']:+7.3f} %  max dd {s['Max. Drawdown [%]']:7.3f} %  "
                f"trades {s['# Trades']:>3}  win {backtest_html.fmt(s['Win Rate [%]']):>6} %"
            )
    return lines


def backtest(settings: Settings, args) -> int:
    try:
        names = select(settings, args.strategy)
        result = run(settings, names, args.trades, args.out, args.orderbook, args.status)
    except BacktestError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2
    except PlanError as exc:
        return validation.report(exc.errors)
    except replay.ReplayInputError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the job failed: Flink's reason, not its stack
        print(f"runner: backtest failed: {java_message(exc)}", file=sys.stderr)
        return 1
    for line in summary_lines(result):
        print(line)
    for name in result.books:
        print(
            f"  {result.out_dir / (name + '.jsonl')}  {result.out_dir / (name + '_trades.jsonl')}"
        )
    print(f"  report: {result.report}")
    return 0
