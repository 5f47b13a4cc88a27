"""Replay (backtest): the same sql/ files over bounded files instead of Kafka topics.

    python -m runner replay --trades T.jsonl|T.csv [--orderbook B.jsonl] [--status S.jsonl] --out DIR

Inputs are the producer's `--out` files (one topic payload per line). Trades may also be CSV
`ticker,ts,price,qty,side,trade_id` (ts ISO 8601 UTC or epoch ms). Before the job starts each
input is copied into DIR/.replay/inputs/ sorted by ts (stable), so no record is late and the
same input always gives the same output; a missing input is an empty file. DIR/.replay/ is
removed after a successful run and kept after a failed one.

The job runs in streaming mode (the live job's semantics: watermarks, windows, MATCH_RECOGNIZE)
and ends when the files are consumed. Each output is written to DIR/<name>.jsonl, one JSON
object per line exactly as on its topic, sorted by the output's grain then by the whole line.
Twins (`*_live`) are not written.

While the job runs a line of progress is printed every 5 s: records read per input (the source
operators' counters in the MiniCluster's REST API), rows written per output (lines in its part
files so far), the trade rate and the time left at that rate.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from producer.records import trade_json
from producer.validate import CSV_COLUMNS, Invalid, parse_csv_header, trade_from_csv_line
from runner import plan_cache
from runner.connectors import FileConnectors
from runner.errors import java_message
from runner.flink_env import create_table_env
from runner.plan import PlanError, load_plan
from runner.replay_progress import PROGRESS_EVERY_S, FinalCheckpoints, Progress
from runner.settings import Settings
from runner.sqlfiles import grain_columns
from runner.validation import report
from stack.kafka import free_port

INPUT_FILES = {
    "trades": "trades.jsonl",
    "orderbook": "orderbook.jsonl",
    "market_status": "market_status.jsonl",
}
REPLAY_CHECKPOINT_INTERVAL = "60 s"
# Up to this many trades the JVM compiles with C1 only (runner/flink_env.py, quick_start): the
# job is over before C2's code would pay for its compilation.
QUICK_START_MAX_TRADES = 100_000
# Generated operator code of a short replay is not split into small methods. Flink splits any
# generated class over `table.generated-code.max-length` (4,000 chars by default) by parsing it
# with an ANTLR Java grammar, so that the JIT compiles its methods (HotSpot skips methods over
# 8,000 bytes of bytecode); on a 1,000-trade replay that parsing was 2.5-3 s of a 17.5-s command
# and the JIT's steady state does not matter there. 64,000 chars keeps every method well under
# the JVM's 64 KB limit (what the splitter was first written for). Measured 2026-11-30 17:20 UTC,
# quiet: 1,000 trades 17.2-17.5 s -> 13.9-14.1 s; 20 K trades 21.5-21.7 s -> 18.7-19.7 s; at
# 100 K trades the job's own time did not change (30-36 s either way, within the noise).
QUICK_START_CODE_MAX_LENGTH = "64000"


class ReplayInputError(Exception):
    pass


@dataclass
class ReplayResult:
    out_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    input_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # everything, from reading the inputs to writing the outputs
    plan_seconds: float = 0.0  # DDL, planning and the job's submission to its MiniCluster
    # ... of which: the JVM and TableEnvironment, then either "planned and submit" (DDL, the
    # optimiser, the plan cached, the job submitted) or "cached plan and submit" (the compiled
    # plan of an earlier replay of the same SQL loaded and submitted: runner/plan_cache.py)
    plan_parts: dict[str, float] = field(default_factory=dict)
    run_seconds: float = 0.0  # the job itself, from submission to its end

    @property
    def trades_per_second(self) -> float:
        trades = self.input_counts.get("trades", 0)
        return trades / self.run_seconds if self.run_seconds else 0.0

    def rows(self, name: str) -> list[dict]:
        path = self.out_dir / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line]


# --- inputs ---------------------------------------------------------------------------------


def csv_trades_to_jsonl(text: str, source: Path) -> list[str]:
    """CSV `ticker,ts,price,qty,side,trade_id` (header optional) -> topic payload lines.

    Each row is read as the producer reads a CSV replay (producer/validate.py): prices exact
    decimals on the instrument's tick grid, ts ISO 8601 with a zone or epoch ms.
    """
    lines = []
    columns = list(CSV_COLUMNS)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            if number == 1 and line.split(",", 1)[0].strip().lower() == "ticker":
                columns = parse_csv_header(line)
                continue
            cells = len(next(csv.reader([line]), []))
            if cells != len(columns):
                raise ReplayInputError(
                    f"{source}:{number}: expected {len(columns)} columns "
                    f"{','.join(columns)}, got {cells}"
                )
            lines.append(trade_json(trade_from_csv_line(line, columns)))
        except Invalid as exc:
            raise ReplayInputError(f"{source}:{number}: {exc}") from exc
    return lines


def _ts_of(line: str) -> int:
    try:
        ts = json.loads(line).get("ts")
        return int(ts) if ts is not None else -1
    except (ValueError, TypeError, AttributeError):
        return -1  # kept: the source drops what it cannot parse, as live


def prepare_input(source: Path | None, kind: str, target: Path) -> int:
    """Copy one input into target as JSONL sorted by ts (stable); return its record count."""
    if source is None:
        target.write_text("")
        return 0
    if not source.exists():
        raise ReplayInputError(f"{source}: no such file")
    text = source.read_text()
    if source.suffix.lower() == ".csv":
        if kind != "trades":
            raise ReplayInputError(f"{source}: only trades may be CSV")
        lines = csv_trades_to_jsonl(text, source)
    else:
        lines = [line for line in text.splitlines() if line.strip()]
    lines.sort(key=_ts_of)
    target.write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


# --- the job --------------------------------------------------------------------------------


def replay_settings(base: Settings) -> Settings:
    # Bounded files: throughput over latency in the Python workers.
    return base.model_copy(update={"python_bundle_time_ms": 1000})


def run(
    settings: Settings,
    trades: Path | None,
    out_dir: Path,
    orderbook: Path | None = None,
    status: Path | None = None,
    progress_every_s: float | None = None,
) -> ReplayResult:
    """Replay the files through sql/ and write DIR/<output>.jsonl; raises PlanError/ReplayInputError."""
    started = time.monotonic()
    settings = replay_settings(settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".replay"
    shutil.rmtree(work, ignore_errors=True)
    (work / "inputs").mkdir(parents=True)
    result = ReplayResult(out_dir)
    inputs = {}
    for kind, source in (("trades", trades), ("orderbook", orderbook), ("market_status", status)):
        target = work / "inputs" / INPUT_FILES[kind]
        result.input_counts[kind] = prepare_input(source, kind, target)
        inputs[kind] = target

    plan = load_plan(settings)
    connectors = FileConnectors(settings, inputs, work / "parts")
    planning = time.monotonic()
    config = replay_config(settings, work)
    quick_start = result.input_counts["trades"] <= QUICK_START_MAX_TRADES
    if quick_start:
        config["table.generated-code.max-length"] = QUICK_START_CODE_MAX_LENGTH
    t_env = create_table_env(settings, extra=config, quick_start=quick_start)
    jvm_ready = time.monotonic()
    table_result, how = plan_cache.submit(t_env, plan, connectors, settings, config, work)
    running = time.monotonic()
    result.plan_seconds = running - planning
    result.plan_parts = {
        "JVM start": jvm_ready - planning,
        f"{how} and submit": running - jvm_ready,
    }
    every_s = PROGRESS_EVERY_S if progress_every_s is None else progress_every_s
    client = table_result.get_job_client()
    # Read once here: the watcher threads must not call the JVM (py4j would hand them the
    # main thread's connection, whose context class loader PyFlink set up).
    job_id = str(client.get_job_id()) if client is not None else None
    progress = Progress(
        int(config["rest.port"]),
        lambda: job_id,
        result.input_counts,
        work / "parts",
        [o.name for o in plan.outputs],
        every_s=every_s,
    )
    closing = FinalCheckpoints(int(config["rest.port"]), progress.job_id).start()
    if every_s > 0:
        progress.start()
    try:
        table_result.wait()
    finally:
        progress.stop()
        closing.stop()
    if every_s > 0:
        progress.finished()
    result.run_seconds = time.monotonic() - running

    for output in plan.outputs:
        lines = collect_parts(work / "parts" / output.name)
        grain = grain_columns(output.file)
        lines.sort(key=lambda line, g=grain: sort_key(line, g))
        (out_dir / f"{output.name}.jsonl").write_text("".join(f"{line}\n" for line in lines))
        result.counts[output.name] = len(lines)
    shutil.rmtree(work, ignore_errors=True)  # kept only when the job fails, to look at
    result.seconds = time.monotonic() - started
    return result


def replay_config(settings: Settings, work: Path) -> dict[str, str]:
    return {
        # The filesystem sink commits its files on checkpoints. FinalCheckpoints triggers them
        # once the inputs are read; the periodic ones are a fallback only (were every 1 s).
        "execution.checkpointing.interval": REPLAY_CHECKPOINT_INTERVAL,
        "execution.checkpointing.dir": (work / "checkpoints").resolve().as_uri(),
        "pipeline.auto-watermark-interval": "200 ms",
        "restart-strategy.type": "none",
        # A free port, known, for the progress reporter to read the sources' counters.
        "rest.port": str(free_port()),
        # The REST API caches metrics this long (default 10 s): fresh counters every line.
        "metrics.fetcher.update-interval": "2 s",
    }


def collect_parts(folder: Path) -> list[str]:
    lines: list[str] = []
    if not folder.exists():
        return lines
    for part in sorted(folder.rglob("*")):
        if part.is_file() and not part.name.startswith("."):
            lines.extend(line for line in part.read_text().splitlines() if line.strip())
    return lines


def sort_key(line: str, grain: list[str]) -> tuple:
    record = json.loads(line)
    return tuple("" if record.get(c) is None else str(record.get(c)) for c in grain), line


# --- command line ---------------------------------------------------------------------------


def replay(settings: Settings, args) -> int:
    try:
        result = run(settings, args.trades, args.out, args.orderbook, args.status)
    except PlanError as exc:
        return report(exc.errors)
    except ReplayInputError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the job failed: Flink's reason, not its stack
        print(f"runner: replay failed: {java_message(exc)}", file=sys.stderr)
        print(f"runner: inputs and partial outputs kept in {args.out / '.replay'}", file=sys.stderr)
        return 1
    counts = result.input_counts
    print(
        f"runner: replayed {counts.get('trades', 0)} trades, {counts.get('orderbook', 0)} book "
        f"snapshots, {counts.get('market_status', 0)} status changes in {result.seconds:.1f} s "
        f"(planning {result.plan_seconds:.1f} s, job {result.run_seconds:.1f} s: "
        f"{result.trades_per_second:,.0f} trades/s; "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.plan_parts.items())
        + ")"
    )
    width = max(len(name) for name in result.counts) if result.counts else 0
    for name, count in result.counts.items():
        print(f"  {name:<{width}}  {count:>8} rows  {result.out_dir / (name + '.jsonl')}")
    return 0
