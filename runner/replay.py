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
import io
import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from runner import job
from runner.errors import java_message
from runner.flink_rest import rest as rest_get
from runner.settings import Settings
from stack.kafka import free_port

INPUT_FILES = {
    "trades": "trades.jsonl",
    "orderbook": "orderbook.jsonl",
    "market_status": "market_status.jsonl",
}
CSV_COLUMNS = ("ticker", "ts", "price", "qty", "side", "trade_id")


class ReplayInputError(Exception):
    pass


@dataclass
class ReplayResult:
    out_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    input_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # everything, from reading the inputs to writing the outputs
    plan_seconds: float = 0.0  # DDL, planning and the job's submission to its MiniCluster
    # ... of which: the JVM and TableEnvironment, the DDL statements (each parsed and
    # validated), and the optimiser + job submission (statement_set.execute)
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


def _epoch_ms(value: str) -> int:
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    text = value.replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(round(moment.timestamp() * 1000))


def csv_trades_to_jsonl(text: str, source: Path) -> list[str]:
    """CSV `ticker,ts,price,qty,side,trade_id` (header optional) -> topic payload lines."""
    lines = []
    reader = csv.reader(io.StringIO(text))
    for number, row in enumerate(reader, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if number == 1 and row[0].strip().lower() == "ticker":
            continue
        if len(row) != len(CSV_COLUMNS):
            raise ReplayInputError(
                f"{source}:{number}: expected {len(CSV_COLUMNS)} columns "
                f"{','.join(CSV_COLUMNS)}, got {len(row)}"
            )
        ticker, ts, price, qty, side, trade_id = (cell.strip() for cell in row)
        try:
            record = {
                "event_id": f"{ticker}:T:{trade_id}",
                "ticker": ticker,
                "board": "TQBR",
                "trade_id": int(trade_id),
                "ts": _epoch_ms(ts),
                "price": float(price),
                "qty": int(qty),
                "side": side,
            }
        except ValueError as exc:
            raise ReplayInputError(f"{source}:{number}: {exc}") from exc
        lines.append(json.dumps(record, separators=(",", ":")))
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


# --- progress -----------------------------------------------------------------------------

# A source operator's record counter, per subtask: "0.Source__trades_raw[1].numRecordsOut"
SOURCE_COUNTER = re.compile(r"^\d+\.Source__(?P<table>\w+)_raw\[\d+\]\.numRecordsOut$")
PROGRESS_EVERY_S = 5.0
REPLAY_CHECKPOINT_INTERVAL = "60 s"
# Up to this many trades the JVM compiles with C1 only (runner/job.py, quick_start): the job is
# over before C2's code would pay for its compilation.
QUICK_START_MAX_TRADES = 100_000


class LineCounter:
    """Lines written so far under a sink's folder, reading only what was appended since the last
    count (in-progress part files grow; a committed one is renamed once, then counted anew)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[Path, tuple[int, int]] = {}  # path -> (bytes read, newlines in them)

    def count(self) -> int:
        if not self.folder.exists():
            return 0
        current: dict[Path, tuple[int, int]] = {}
        for part in self.folder.rglob("*"):
            try:
                if not part.is_file():
                    continue
                offset, lines = self.seen.get(part, (0, 0))
                with open(part, "rb") as stream:
                    stream.seek(offset)
                    chunk = stream.read()
                current[part] = (offset + len(chunk), lines + chunk.count(b"\n"))
            except OSError:
                continue  # renamed or removed between listing and reading: counted next time
        self.seen = current
        return sum(lines for _, lines in current.values())


class JobWatcher:
    """A daemon thread calling `tick` every `every_s` while the replay's job runs."""

    def __init__(self, rest_port: int, job_id: Callable[[], str | None], every_s: float) -> None:
        self.rest_port = rest_port
        self.job_id = job_id
        self.every_s = every_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def start(self) -> JobWatcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.ident is not None:
            self.thread.join(10)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        due = time.monotonic() + self.every_s
        while not self.stopped.wait(max(0.0, due - time.monotonic())):
            due += self.every_s  # a fixed cadence, however long the REST calls take
            self.tick()


class Progress(JobWatcher):
    """Prints a progress line every `every_s` while the replay's job runs."""

    def __init__(
        self,
        rest_port: int,
        job_id: Callable[[], str | None],
        totals: dict[str, int],
        parts_dir: Path,
        outputs: list[str],
        every_s: float = PROGRESS_EVERY_S,
        write: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(rest_port, job_id, every_s)
        self.totals = totals
        self.counters = {name: LineCounter(parts_dir / name) for name in outputs}
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started = time.monotonic()
        self.last = (0.0, 0)  # (seconds, trades read) at the previous line

    def records_read(self) -> dict[str, int]:
        """Records each source has emitted so far, or {} before the job reports metrics."""
        job_id = self.job_id()
        if job_id is None:
            return {}
        read: dict[str, int] = {}
        for vertex in rest_get(self.rest_port, f"/jobs/{job_id}", timeout=5).get("vertices", []):
            if not vertex.get("name", "").startswith("Source: "):
                continue
            base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
            names = [m["id"] for m in rest_get(self.rest_port, base, timeout=5)]
            wanted = [n for n in names if SOURCE_COUNTER.match(n)]
            if not wanted:
                continue
            for metric in rest_get(self.rest_port, f"{base}?get={','.join(wanted)}", timeout=5):
                table = SOURCE_COUNTER.match(metric["id"])["table"]
                read[table] = read.get(table, 0) + int(float(metric["value"]))
        return read

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        try:
            read = self.records_read()
        except Exception:  # noqa: BLE001 - the MiniCluster is starting or finishing
            read = {}
        inputs = ", ".join(
            f"{name} {read[name]:,}/{total:,}" if name in read else f"{name} ?/{total:,}"
            for name, total in self.totals.items()
        )
        written = ", ".join(f"{name} {c.count():,}" for name, c in self.counters.items())
        trades, total = read.get("trades"), self.totals.get("trades", 0)
        pace = "rate and ETA once the sources report"
        if trades:
            # The rate since the previous line: the job's start does not drag the ETA.
            since, before = self.last
            recent = (trades - before) / (elapsed - since) if trades > before else 0.0
            rate = recent or trades / elapsed
            pace = f"{rate:,.0f} trades/s, ETA {(total - trades) / rate:.0f} s"
            if trades > before:  # REST metrics refresh less often than lines are printed
                self.last = (elapsed, trades)
        return f"runner: {elapsed:.0f} s: read {inputs}; written {written}; {pace}"

    def tick(self) -> None:
        self.write(self.line())


class FinalCheckpoints(JobWatcher):
    """Asks for a checkpoint every second once every source has read its file to the end.

    The filesystem sink commits its files only on checkpoints, and a bounded streaming job ends
    only after a checkpoint taken when its tasks are done. Periodic checkpoints while the files
    are read only cost time (each one snapshots every window, OVER and MATCH_RECOGNIZE state),
    so replay checkpoints rarely and triggers the closing ones itself (POST
    /jobs/<id>/checkpoints) as soon as the inputs are consumed.
    """

    def __init__(self, rest_port: int, job_id: Callable[[], str | None]) -> None:
        super().__init__(rest_port, job_id, every_s=1.0)

    def sources_finished(self, job_id: str) -> bool:
        vertices = rest_get(self.rest_port, f"/jobs/{job_id}", timeout=5).get("vertices", [])
        sources = [v for v in vertices if v.get("name", "").startswith("Source: ")]
        return bool(sources) and all(v.get("status") == "FINISHED" for v in sources)

    def tick(self) -> None:
        try:
            job_id = self.job_id()
            if job_id is not None and self.sources_finished(job_id):
                rest_get(self.rest_port, f"/jobs/{job_id}/checkpoints", body={}, timeout=5)
        except Exception:  # noqa: BLE001 - not running yet, one in progress, or job over
            pass


# --- the job --------------------------------------------------------------------------------


def replay_settings(base: Settings) -> Settings:
    settings = Settings(**{k: getattr(base, k) for k in base.__dataclass_fields__})
    # Bounded files: throughput over latency in the Python workers.
    settings.python_bundle_time_ms = 1000
    return settings


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

    plan = job.load_plan(settings)
    connectors = job.FileConnectors(settings, inputs, work / "parts")
    planning = time.monotonic()
    config = replay_config(settings, work)
    quick_start = result.input_counts["trades"] <= QUICK_START_MAX_TRADES
    t_env = job.create_table_env(settings, extra=config, quick_start=quick_start)
    jvm_ready = time.monotonic()
    statement_set = job.build(t_env, plan, connectors, settings, twins=False)
    ddl_done = time.monotonic()
    table_result = statement_set.execute()
    running = time.monotonic()
    result.plan_seconds = running - planning
    result.plan_parts = {
        "JVM start": jvm_ready - planning,
        "DDL": ddl_done - jvm_ready,
        "optimise and submit": running - ddl_done,
    }
    every_s = PROGRESS_EVERY_S if progress_every_s is None else progress_every_s
    client = table_result.get_job_client()
    progress = Progress(
        int(config["rest.port"]),
        lambda: str(client.get_job_id()) if client is not None else None,
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
    result.run_seconds = time.monotonic() - running

    for output in plan.outputs:
        lines = collect_parts(work / "parts" / output.name)
        grain = [c.strip() for c in output.file.header.get("grain", "").split(",") if c.strip()]
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
    from runner.cli import _report

    try:
        result = run(settings, args.trades, args.out, args.orderbook, args.status)
    except job.PlanError as exc:
        return _report(exc.errors)
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
