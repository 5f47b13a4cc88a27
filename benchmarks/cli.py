"""`python -m benchmarks [--only NAMES] [--quick] [--repeat N] [--keep]`: run, print, save."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from benchmarks.harness import say, stop_all
from benchmarks.report import Result, load_avg, machine_facts
from moex.paths import ROOT

NAMES = ("producer", "replay", "live", "rss", "fanout", "peer")
DESCRIPTIONS = {
    "producer": "python -m producer synthetic --rate 0 into a local broker: trades/s",
    "replay": "python -m runner replay of 1 M synthetic trades (10 tickers + book): trades/s",
    "live": "runner run + gateway under stepped wall-clock load: sustained rate, latencies",
    "rss": "peak RSS of each component during the live benchmark (runs live)",
    "fanout": "SSE clients: 100 and 1,000 on one gateway process, 10,000 across 2: delay, CPU, RSS",
    "peer": "the same candles + EMA(12) job in Flink and in Quix Streams: throughput ratio",
}
# Repeats per benchmark (medians are reported); `--repeat` overrides. The 1 M replay and the
# live steps are long single measurements; `make bench` stays around 20 minutes.
DEFAULT_REPEATS = {"producer": 3, "replay": 2, "fanout": 3, "peer": 2}
RESULTS_DIR = ROOT / "bench-results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of the MOEX platform on this machine (not part of make test).",
        epilog="\n".join(f"  {n:9s} {d}" for n, d in DESCRIPTIONS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--quick", action="store_true", help="small inputs, one run each (~3 min)")
    parser.add_argument("--repeat", type=int, help="runs per benchmark (default: per benchmark)")
    parser.add_argument("--keep", action="store_true", help="keep temp folders (for debugging)")
    parser.add_argument(
        "--max-load",
        type=float,
        metavar="L",
        help="before each benchmark wait (up to 10 min) until the 1-minute load average is "
        "below L: on a shared machine other jobs move every number",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder of the JSON result")
    args = parser.parse_args(argv)
    selected = [n.strip() for n in (args.only or ",".join(NAMES)).split(",") if n.strip()]
    unknown = sorted(set(selected) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(NAMES)}")
    args.selected = [n for n in NAMES if n in selected]
    return args


def repeats(args: argparse.Namespace, name: str) -> int:
    if args.repeat:
        return max(1, args.repeat)
    return 1 if args.quick else DEFAULT_REPEATS.get(name, 1)


def run_selected(args: argparse.Namespace) -> list[Result]:
    from benchmarks import bench_fanout, bench_live, bench_peer, bench_producer, bench_replay

    results: list[Result] = []

    def attempt(name: str, func) -> None:
        if args.max_load:
            wait_quiet(args.max_load)
        started = time.monotonic()
        load_before = load_avg()
        say(f"=== {name} (load average {load_before[0]})")
        try:
            outcome = func()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            stop_all()
            outcome = Result(name, error=f"{type(exc).__name__}: {exc}")
            say(f"{name} failed: {outcome.error}")
        for result in outcome if isinstance(outcome, tuple) else (outcome,):
            result.seconds = round(time.monotonic() - started, 1)
            # Other work on a shared machine moves every number here: keep the load with it.
            result.details["load_avg_before_after"] = [load_before, load_avg()]
            results.append(result)

    selected = args.selected
    if "producer" in selected:
        attempt(
            "producer", lambda: bench_producer.run(args.quick, repeats(args, "producer"), args.keep)
        )
    if "replay" in selected:
        attempt(
            "replay",
            lambda: bench_replay.run(args.quick, repeats(args, "replay"), args.keep, repeat_full=1),
        )
    if "live" in selected or "rss" in selected:

        def live():
            live_result, rss_result = bench_live.run(args.quick, 1, args.keep)
            chosen = []
            if "live" in selected:
                chosen.append(live_result)
            if "rss" in selected:
                chosen.append(rss_result)
            return tuple(chosen)

        attempt("live", live)
    if "fanout" in selected:
        attempt("fanout", lambda: bench_fanout.run(args.quick, repeats(args, "fanout"), args.keep))
    if "peer" in selected:
        attempt("peer", lambda: bench_peer.run(args.quick, repeats(args, "peer"), args.keep))
    return results


def wait_quiet(max_load: float, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    if load_avg()[0] >= max_load:
        say(f"waiting for the load average to drop below {max_load} (now {load_avg()[0]})")
    while load_avg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(5)


def table(results: list[Result]) -> str:
    header = ("benchmark", "metric", "median", "unit", "target", "")
    lines = [header]
    for result in results:
        if result.error:
            lines.append((result.name, "ERROR", result.error[:100], "", "", "✗"))
        for row in result.rows:
            value = row["value"]
            if isinstance(value, float):
                value = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
            elif isinstance(value, int):
                value = f"{value:,}"
            verdict = {True: "met", False: "MISSED", None: ""}[row["met"]]
            lines.append(
                (result.name, row["metric"], str(value), row["unit"], row["target"], verdict)
            )
    widths = [min(max(len(str(line[i])) for line in lines), 80) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        out.append("  ".join(str(cell)[:80].ljust(widths[i]) for i, cell in enumerate(line)))
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    facts = machine_facts()
    say(
        f"benchmarks: {', '.join(args.selected)}{' (quick)' if args.quick else ''}; "
        f"{facts['cores']} cores, load average {facts['load_avg_at_start']}"
    )
    started = time.monotonic()
    try:
        results = run_selected(args)
    except KeyboardInterrupt:
        say("interrupted: stopping every process started")
        stop_all()
        return 130
    finally:
        stop_all()
    facts["load_avg_at_end"] = load_avg()
    facts["total_s"] = round(time.monotonic() - started, 1)
    document = {
        "machine": facts,
        "quick": args.quick,
        "selected": args.selected,
        "results": [
            {
                "name": r.name,
                "seconds": r.seconds,
                "error": r.error,
                "rows": r.rows,
                "notes": r.notes,
                "details": r.details,
            }
            for r in results
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ".json")
    path.write_text(json.dumps(document, indent=2, default=str))
    print(table(results))
    print(
        f"\n{facts['cores']} cores ({facts['cpu']}), {facts['ram_gib']} GiB, Python "
        f"{facts['python']}, {facts['java']}; load average {facts['load_avg_at_start']} at "
        f"start, {facts['load_avg_at_end']} at end; {facts['total_s']:.0f} s in all"
    )
    for result in results:
        for note in result.notes:
            print(f"note ({result.name}): {note}")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
