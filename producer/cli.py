"""`python -m producer SOURCE [options]`: synthetic, replay or ISS quotes into Kafka or files.

Exit status: 0 when the source is exhausted, --max-events is reached or a signal stopped the
run after a clean flush; 1 when Kafka is unreachable or delivery failed; 2 for bad usage or an
unreadable input file.

Over 300 lines: the argument parser of three sources (most of the module) and the run loop
that wires a source to its sinks with progress and a clean stop.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from producer import iss
from producer.pipeline import ClockPacer, Pacer, RatePacer, Reporter, Stats, run
from producer.records import Record, Reject, Topics
from producer.reference import INSTRUMENTS, parse_tickers
from producer.replay import FORMATS, ReplayError, replay
from producer.schedule import MSK, epoch_ms, msk_ms, today_msk, wall_ms
from producer.sinks import FileSink, KafkaSink, Sink, SinkError, out_paths
from producer.synthetic import SyntheticMarket

# With --seed the session starts here unless --start says otherwise, so a seeded run is
# byte-identical on any day (a Thursday; the default without --seed is 10:00 MSK today).
SEEDED_START = datetime(2026, 11, 26, 10, 0, tzinfo=MSK)
# A record Kafka has not acknowledged by then counts as failed and the run stops. Kafka's own
# default (2 min): long enough to ride out a broker restart (a single KRaft broker is back
# in 10-30 s; tests/test_faults_broker.py keeps it down 15 s+), short enough to fail loudly.
# How long the end of a run waits for held records when no --delivery-timeout bounds them.
FINAL_FLUSH_S = 60.0
EPILOG = """\
examples:
  python -m producer synthetic                                  # live, real pace, into Kafka
  python -m producer synthetic --accelerate 60                  # a session hour per minute
  python -m producer synthetic --seed 7 --max-events 20000 --out .run/demo/trades.jsonl
  python -m producer replay .run/demo --speed 10                # replay an --out folder
  python -m producer replay trades.csv --speed 0                # CSV as fast as possible
  python -m producer iss --tickers SBER,GAZP                    # MOEX ISS, 15 min delayed
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _tickers(text: str) -> list[str]:
    try:
        return parse_tickers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _start(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-11-26T09:45:00+03:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=MSK)  # the session clock is Moscow time
    return epoch_ms(moment)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    out = common.add_argument_group("output")
    out.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or 127.0.0.1:9092)",
    )
    out.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="write JSONL files instead of Kafka: a folder gets trades.jsonl, orderbook.jsonl, "
        "market_status.jsonl and dlq.jsonl; a name ending in .jsonl is the trades file and "
        "the other three go beside it",
    )
    out.add_argument(
        "--topic-prefix",
        default="moex.",
        help="topics are PREFIX + trades|orderbook|market_status|dlq (default: moex.)",
    )
    out.add_argument(
        "--compression",
        default="auto",
        choices=("auto", "lz4", "zstd", "gzip", "snappy", "none"),
        help="Kafka batch compression; auto = lz4 if the lz4 package is installed, else gzip "
        "(zstd only on request: the Flink Kafka connector here cannot read it)",
    )
    out.add_argument(
        "--connect-timeout",
        type=_non_negative,
        default=15.0,
        metavar="S",
        help="give up when no broker answers within S seconds (default: 15)",
    )
    out.add_argument(
        "--delivery-timeout",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="a record Kafka has not acknowledged within S seconds (retries included) fails "
        "the run (default: 0 = hold: while brokers are down or min.insync.replicas cannot be "
        "met the producer says 'holding', keeps and retries its records, and blocks the "
        "source once 50,000 wait; nothing is dropped)",
    )
    out.add_argument(
        "--stats-every",
        type=_non_negative,
        default=5.0,
        metavar="S",
        help="print a stat line to stderr every S seconds, 0 = never (default: 5)",
    )
    flow = common.add_argument_group("flow")
    flow.add_argument(
        "--max-events", type=_positive_int, metavar="N", help="stop after N events (see SOURCE)"
    )
    flow.add_argument(
        "--rate",
        type=_non_negative,
        metavar="R",
        help="emit at most R events per wall-clock second, 0 = as fast as possible; "
        "overrides --accelerate/--speed",
    )

    parser = argparse.ArgumentParser(
        prog="python -m producer",
        description="Publish MOEX TQBR trades, order books and session phases to Kafka "
        "(moex.trades, moex.orderbook, moex.market_status; rejects to moex.dlq) or to JSONL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    syn = sources.add_parser(
        "synthetic",
        parents=[common],
        help="a simulated TQBR session (what `make up` runs)",
        description="A simulated TQBR market: GARCH prices on the tick grid, Poisson trades with "
        "intraday activity, 10-level books, the MOEX schedule (MSK) and injected anomalies. "
        "An event is a trade: --max-events and --rate count trades, books and phase changes "
        "ride along. Default pace: real time into Kafka, as fast as possible into --out.",
    )
    syn.add_argument("--seed", type=int, help="seed of all randomness: same seed, same stream")
    syn.add_argument(
        "--start",
        type=_start,
        metavar="ISO",
        help="session clock start, e.g. 2026-11-26T09:45:00+03:00 (no offset = MSK); default "
        "10:00 MSK today, or 2026-11-26 10:00 MSK with --seed so seeded output never changes",
    )
    syn.add_argument(
        "--tickers",
        type=_tickers,
        help=f"subset of {','.join(INSTRUMENTS)} (default: all)",
    )
    syn.add_argument(
        "--accelerate",
        type=_non_negative,
        metavar="K",
        help="run the session clock K times faster than the wall clock, 0 = as fast as "
        "possible (default: 1 into Kafka, 0 into --out)",
    )
    syn.add_argument(
        "--anomaly-rate",
        type=_non_negative,
        default=0.2,
        metavar="X",
        help="injected anomalies per 1000 trades, 0 = none (default: 0.2)",
    )
    syn.add_argument(
        "--truth",
        type=Path,
        metavar="PATH",
        help="JSONL ground truth of injected anomalies (default with --out: truth.jsonl "
        "beside the trades file; none into Kafka)",
    )

    rep = sources.add_parser(
        "replay",
        parents=[common],
        help="replay JSONL, CSV or MOEX ISS JSON files",
        description="Replay a file: .jsonl (our topic payloads, one a line, as --out writes "
        "them), .csv (header ticker,ts,price,qty,side,trade_id; ts ISO 8601 UTC or epoch ms) "
        "or .json (a saved MOEX ISS response: trades, orderbook, marketdata blocks); or an "
        "--out folder, merged by event time. Every input record is an event.",
    )
    rep.add_argument("path", type=Path, metavar="PATH")
    rep.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    rep.add_argument(
        "--speed",
        type=_non_negative,
        metavar="K",
        help="K x the recorded pace, 0 = as fast as possible (default: 1 into Kafka, 0 into --out)",
    )

    live = sources.add_parser(
        "iss",
        parents=[common],
        help="poll the public MOEX ISS API (delayed by 15 minutes)",
        description="Poll https://iss.moex.com for the trades (and the trading status) of "
        "TQBR securities. The public ISS feed is DELAYED BY 15 MINUTES and needs no key; it "
        "has no order books (those need a subscription). Pages with start=, resumes after the "
        "last TRADENO, asks each security at most once per --min-interval and backs off "
        "exponentially on errors. Every record is an event.",
    )
    live.add_argument(
        "--tickers", type=_tickers, default=["SBER", "GAZP"], help="default: SBER,GAZP"
    )
    live.add_argument("--min-interval", type=_non_negative, default=1.0, metavar="S")
    live.add_argument(
        "--idle-interval",
        type=_non_negative,
        default=5.0,
        metavar="S",
        help="wait after an empty page (caught up), default 5",
    )
    live.add_argument(
        "--status-interval",
        type=_non_negative,
        default=30.0,
        metavar="S",
        help="poll marketdata for the phase every S seconds, 0 = never (default: 30)",
    )
    live.add_argument("--iss-url", default=iss.ISS_URL, help=argparse.SUPPRESS)
    return parser


class TruthWriter:
    """Ground truth of injected anomalies, one JSON object per line, written as they end."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.count = 0
        self._file: IO[str] = path.open("w", encoding="utf-8")

    def write(self, truth: dict[str, Any]) -> None:
        # Prices are Decimals: print their text as JSON numbers, never through float.
        fields = ",".join(
            f"{json.dumps(k)}:{v}" if k.endswith("_price") else f"{json.dumps(k)}:{json.dumps(v)}"
            for k, v in truth.items()
        )
        self._file.write("{" + fields + "}\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()


def _signals(stop: threading.Event) -> dict[int, Any]:
    """SIGINT/SIGTERM stop the run (flush, then report); returns the handlers replaced."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second signal: the user means it
            print("producer: second signal, exiting without flushing", file=sys.stderr)
            os._exit(130)
        print(f"producer: {signal.Signals(signum).name}, flushing...", file=sys.stderr, flush=True)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}


def _pacer(rate: float | None, factor: float | None, stop: threading.Event) -> Pacer | None:
    if rate is not None:
        return RatePacer(rate, stop) if rate > 0 else None
    return ClockPacer(factor, stop) if factor else None


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = stop or threading.Event()
    stats = Stats()
    truth: TruthWriter | None = None
    truth_path: Path | None = None
    market: SyntheticMarket | None = None
    items: Iterator[Record | Reject]
    validate = False
    events_are_trades = False
    notes: list[str] = []

    if args.out is not None:
        try:
            out_paths(args.out)
        except SinkError as exc:
            print(f"producer: {exc}", file=sys.stderr)
            return 2

    if args.source == "synthetic":
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
        if args.start is not None:
            start = args.start
        elif args.seed is not None:
            start = epoch_ms(SEEDED_START)
        else:
            start = msk_ms(today_msk(wall_ms()), clock_time(10, 0))
        truth_path = args.truth
        if truth_path is None and args.out is not None:
            truth_path = out_paths(args.out)[0].parent / "truth.jsonl"
        market = SyntheticMarket(seed, start, tickers=args.tickers, anomaly_rate=args.anomaly_rate)
        items = market.records()
        validate = events_are_trades = True
        factor = args.accelerate if args.accelerate is not None else (0 if args.out else 1.0)
        pacer = _pacer(args.rate, factor, stop)
        notes.append(f"seed {seed}, session start {datetime.fromtimestamp(start / 1000, MSK)}")
    elif args.source == "replay":
        try:
            items = replay(args.path, args.format)
        except ReplayError as exc:
            print(f"producer: {exc}", file=sys.stderr)
            return 2
        factor = args.speed if args.speed is not None else (0 if args.out else 1.0)
        pacer = _pacer(args.rate, factor, stop)
    else:

        def fetch_error(message: str) -> None:
            stats.errors += 1
            print(f"producer: {message}", file=sys.stderr, flush=True)

        poller = iss.IssPoller(
            args.tickers,
            base_url=args.iss_url,
            min_interval_s=args.min_interval,
            idle_interval_s=args.idle_interval,
            status_interval_s=args.status_interval,
            wait=stop.wait,
            on_error=fetch_error,
        )
        items = poller.records()
        pacer = _pacer(args.rate, None, stop)
        print(
            f"producer: polling ISS for {','.join(args.tickers)}; {iss.ISS_DELAY_NOTE}",
            file=sys.stderr,
        )

    sink: Sink
    try:
        if args.out is not None:
            sink = FileSink(args.out)
        else:
            sink = KafkaSink(
                args.bootstrap,
                Topics.with_prefix(args.topic_prefix),
                compression=args.compression,
                connect_timeout_s=args.connect_timeout,
                delivery_timeout_s=args.delivery_timeout,
                on_failure=stop,
            )
    except SinkError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        return 1 if args.out is None else 2
    print(f"producer: {args.source} -> {sink.describe()}", file=sys.stderr, flush=True)
    if market is not None and truth_path is not None:
        try:
            truth = TruthWriter(truth_path)
        except OSError as exc:
            sink.close()
            print(f"producer: cannot write the truth file: {exc}", file=sys.stderr)
            return 2
        market.on_anomaly = truth.write

    replaced = _signals(stop)
    ended, error = "failed", None
    stats.started = time.monotonic()
    try:
        with Reporter(stats, args.stats_every):
            try:
                ended = run(
                    items,
                    sink,
                    stats,
                    stop,
                    pacer=pacer,
                    max_events=args.max_events,
                    events_are_trades=events_are_trades,
                    validate=validate,
                )
            except (SinkError, ReplayError, OSError) as exc:
                error = str(exc)
            try:  # what was handed over is delivered, or fails, within the delivery timeout
                sink.flush(
                    timeout_s=args.delivery_timeout + 5 if args.delivery_timeout else FINAL_FLUSH_S
                )
            except SinkError as exc:
                error = error or str(exc)
    finally:
        sink.close()
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
        if truth is not None:
            for unfinished in market.unfinished_anomalies() if market else []:
                truth.write(unfinished)
            truth.close()
    stats.errors += getattr(sink, "failed_records", 0)
    error = error or sink.failure
    if truth is not None:
        notes.append(f"truth: {truth.path} ({truth.count} anomalies)")
    _summary(stats, "failed" if error else ended, notes)
    if error:
        print(f"producer: error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def _summary(stats: Stats, ended: str, notes: list[str]) -> None:
    elapsed = time.monotonic() - stats.started
    trades, books, statuses, rejected = stats.counts
    print(
        f"producer: done ({ended}) in {elapsed:.1f} s: {stats.total} records "
        f"(trades {trades}, orderbook {books}, market_status {statuses}, dlq {rejected}); "
        f"rejected {rejected}, errors {stats.errors}; {trades / max(elapsed, 1e-9):.0f} trades/s",
        file=sys.stderr,
    )
    for note in notes:
        print(f"producer: {note}", file=sys.stderr)
    sys.stderr.flush()
