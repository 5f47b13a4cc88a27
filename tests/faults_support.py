"""Helpers of the guarantees-under-failure tests (tests/test_faults_*.py); no tests here.

Everything a fault test starts runs in its own process group (start_new_session=True) and is
stopped with killpg, so a SIGKILL takes the runner's JVM and its Python workers down with it,
as a power cut or an OOM kill would. Waits for results poll with a deadline; the only timed
waits are fault parameters (how long a broker stays down, how long the input pauses).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from stack.kafka import free_port
from stack.topics import load_topics
from tests.processes import Group, wait_for

ROOT = Path(__file__).resolve().parent.parent

# Ten of the twelve synthetic tickers: enough to spread over the three partitions of a topic.
TICKERS = ("SBER", "GAZP", "VTBR", "LKOH", "YDEX", "GMKN", "ROSN", "NVTK", "TATN", "MGNT")
# The evening session (19:05-23:50 MSK) trades 12-25 times a second market-wide: a few tens of
# thousands of trades span half an hour, enough candles to warm RSI and the EMAs up.
EVENING = "2026-11-26T19:05:00+03:00"
SENTINEL_GAP_MS = 10 * 60_000  # past every window of every output (the longest is 5 min)


# --- processes ------------------------------------------------------------------------------


# --- topics ---------------------------------------------------------------------------------


def topic_names(prefix: str) -> dict[str, int]:
    """Every declared topic (topics.toml) under `prefix` instead of `moex.`, with partitions."""
    names: dict[str, int] = {}
    for spec in load_topics().values():
        suffix = spec.name.removeprefix("moex.")
        names[f"{prefix}{suffix}"] = spec.partitions
    return names


def create_prefixed_topics(bootstrap: str, prefix: str, replication_factor: int = 1) -> list[str]:
    from kafka.admin import KafkaAdminClient, NewTopic

    names = topic_names(prefix)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="faults-admin")
    try:
        admin.create_topics(
            [NewTopic(name, parts, replication_factor) for name, parts in names.items()]
        )
    finally:
        admin.close()
    return list(names)


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="faults-admin")
    except Exception:
        return  # the broker is gone (its own data dir is removed with it)
    try:
        admin.delete_topics(list(names))
    except Exception:
        pass
    finally:
        admin.close()


def new_prefix(tag: str) -> str:
    return f"f{tag}{uuid.uuid4().hex[:6]}."


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        return json.loads(self.value, parse_float=Decimal) if self.value is not None else None


def read_topic(
    bootstrap: str, topic: str, committed: bool = True, timeout_s: float = 60.0
) -> list[Record]:
    """Every record of `topic` up to its current end (the last stable offset when committed)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed" if committed else "read_uncommitted",
        enable_auto_commit=False,
        group_id=None,
        client_id="faults-reader",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        partitions = wait_for(
            lambda: consumer.partitions_for_topic(topic), 30, f"partitions of {topic}"
        )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        # Transaction markers take offsets too: done when the position has passed the end.
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                left = {tp.partition: (consumer.position(tp), ends[tp]) for tp in tps}
                raise AssertionError(f"reading {topic} did not reach its end: {left}")
            for batch in consumer.poll(timeout_ms=500).values():
                for r in batch:
                    records.append(Record(r.partition, r.offset, r.key, r.value))
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, committed: bool = True) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed" if committed else "read_uncommitted",
        group_id=None,
        enable_auto_commit=False,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_source_offsets(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` the job's checkpoints have confirmed (offsets committed on checkpoint)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="faults-offsets")
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def publish_lines(
    bootstrap: str,
    topic: str,
    lines: Iterable[tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, int]],
) -> int:
    """Send (key, value[, partition]) with an idempotent producer; return the count acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=10,
        client_id="faults-publisher",
    )
    futures = []
    try:
        for item in lines:
            key, value = item[0], item[1]
            partition = item[2] if len(item) > 2 else None
            futures.append(producer.send(topic, key=key, value=value, partition=partition))
        producer.flush(60)
        for future in futures:
            future.get(timeout=30)
        return len(futures)
    finally:
        producer.close(10)


# --- input data -----------------------------------------------------------------------------


@dataclass
class Session:
    """A seeded synthetic session in files, ended by one sentinel trade and book per ticker."""

    folder: Path
    sentinel_ts: int  # event time of the sentinels: every window before it has closed live

    @property
    def trades_file(self) -> Path:
        return self.folder / "trades.jsonl"

    @property
    def orderbook_file(self) -> Path:
        return self.folder / "orderbook.jsonl"

    @property
    def status_file(self) -> Path:
        return self.folder / "market_status.jsonl"

    def trade_lines(self) -> list[str]:
        return [line for line in self.trades_file.read_text().splitlines() if line]

    def trades(self) -> list[dict]:
        return [json.loads(line, parse_float=Decimal) for line in self.trade_lines()]


def synthetic_session(
    folder: Path,
    seed: int,
    trades: int,
    tickers: Sequence[str] = TICKERS,
    start: str = EVENING,
    anomaly_rate: float = 0.5,
) -> Session:
    """`python -m producer synthetic --out folder`, then the sentinels appended to the files.

    A sentinel is a copy of the ticker's last trade (and book) SENTINEL_GAP_MS later with a new
    number: the live job's watermark passes every real window, so every real window closes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "producer", "synthetic", "--seed", str(seed),
        "--max-events", str(trades), "--start", start, "--tickers", ",".join(tickers),
        "--anomaly-rate", str(anomaly_rate), "--out", str(folder),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    session = Session(folder, 0)
    last_trade: dict[str, dict] = {}
    max_trade_id = 0
    last_ts = 0
    for line in session.trade_lines():
        row = json.loads(line, parse_float=Decimal)
        last_trade[row["ticker"]] = row
        max_trade_id = max(max_trade_id, row["trade_id"])
        last_ts = max(last_ts, row["ts"])
    last_book: dict[str, dict] = {}
    for line in session.orderbook_file.read_text().splitlines():
        if line:
            row = json.loads(line, parse_float=Decimal)
            last_book[row["ticker"]] = row
    sentinel_ts = (last_ts // 1000 + 1) * 1000 + SENTINEL_GAP_MS
    trade_lines, book_lines = [], []
    for number, ticker in enumerate(sorted(last_trade), start=1):
        trade = dict(last_trade[ticker])
        trade_id = max_trade_id + number
        trade.update(event_id=f"{ticker}:T:{trade_id}", trade_id=trade_id, ts=sentinel_ts, qty=1)
        trade_lines.append(dumps(trade))
        if ticker in last_book:
            book = dict(last_book[ticker])
            seq = book["seq"] + 1
            book.update(event_id=f"{ticker}:B:{seq}", seq=seq, ts=sentinel_ts)
            book_lines.append(dumps(book))
    with session.orderbook_file.open("a") as handle:
        handle.write("".join(line + "\n" for line in book_lines))
    with session.trades_file.open("a") as handle:
        handle.write("".join(line + "\n" for line in trade_lines))
    session.sentinel_ts = sentinel_ts
    return session


def dumps(value: Any) -> str:
    """Compact JSON keeping Decimals as written (306.50 stays 306.50, never through a float)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


# --- the job --------------------------------------------------------------------------------


def rest(port: int, path: str, timeout_s: float = 5.0) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
        return json.loads(response.read() or b"{}")


@dataclass
class RunnerJob:
    """`python -m runner run` as users run it, in its own process group, restartable.

    Every start gets a new REST port (the previous one may linger in TIME_WAIT); the checkpoint
    dir, consumer group and transactional-id prefix stay, so a start after a crash restores the
    newest retained checkpoint, as `make up` after a power cut would.
    """

    bootstrap: str
    prefix: str
    work: Path
    only: Sequence[str] = ()
    checkpoint_ms: int = 1000
    heap_mb: int = 768
    extra_env: dict[str, str] = field(default_factory=dict)
    starts: list[Group] = field(default_factory=list)
    rest_port: int = 0
    job_id: str | None = None

    @property
    def run_id(self) -> str:
        return self.prefix.rstrip(".")

    @property
    def checkpoint_dir(self) -> Path:
        return self.work / "checkpoints"

    @property
    def current(self) -> Group:
        return self.starts[-1]

    def start(self) -> RunnerJob:
        self.rest_port = free_port()
        self.job_id = None
        tmp = self.work / "jvm-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "runner", "run",
            "--bootstrap", self.bootstrap,
            "--topic-prefix", self.prefix,
            "--txn-prefix", self.run_id,
            "--group-id", self.run_id,
            "--checkpoint-dir", str(self.checkpoint_dir),
            "--checkpoint-ms", str(self.checkpoint_ms),
            "--rest-port", str(self.rest_port),
            "--catalog", str(self.work / "catalog.json"),
            "--pid-file", str(self.work / "runner.json"),
        ]  # fmt: skip
        if self.only:
            command += ["--only", ",".join(self.only)]
        env = {
            "PYTHONPATH": str(ROOT),
            "JVM_ARGS": f"-Xmx{self.heap_mb}m -Xms128m -XX:MaxMetaspaceSize=384m "
            f"-XX:+UseG1GC -Djava.io.tmpdir={tmp}",
            "FLINK_LOG_DIR": str(self.work / f"flink-logs-{len(self.starts) + 1}"),
            **self.extra_env,
        }
        log = self.work / f"runner-{len(self.starts) + 1}.log"
        self.starts.append(Group(command, log, env).start())
        return self

    def wait_running(self, timeout_s: float = 180.0) -> str:
        """The job id once the job and all its tasks run."""

        def running() -> str | None:
            if not self.current.running():
                raise AssertionError(f"the runner exited:\n{self.current.log()}")
            jobs = rest(self.rest_port, "/jobs/overview").get("jobs", [])
            for job in jobs:
                if job.get("state") == "RUNNING":
                    detail = rest(self.rest_port, f"/jobs/{job['jid']}")
                    vertices = detail.get("vertices", [])
                    if vertices and all(v.get("status") == "RUNNING" for v in vertices):
                        return job["jid"]
            return None

        self.job_id = wait_for(running, timeout_s, "the Flink job to run", every_s=0.5)
        return self.job_id

    def checkpoints(self) -> dict:
        assert self.job_id is not None
        return rest(self.rest_port, f"/jobs/{self.job_id}/checkpoints")

    def completed_checkpoints(self) -> int:
        return int(self.checkpoints().get("counts", {}).get("completed", 0))

    def latest_checkpoint_id(self) -> int:
        latest = (self.checkpoints().get("latest") or {}).get("completed") or {}
        return int(latest.get("id", -1))

    def restored_from(self) -> dict | None:
        return (self.checkpoints().get("latest") or {}).get("restored")

    def wait_checkpoint_after(self, checkpoint_id: int, timeout_s: float = 120.0) -> int:
        """Until a checkpoint newer than `checkpoint_id` has completed; return its id."""

        def newer() -> int | None:
            if not self.current.running():
                raise AssertionError(f"the runner exited:\n{self.current.log()}")
            latest = self.latest_checkpoint_id()
            return latest if latest > checkpoint_id else None

        return wait_for(newer, timeout_s, f"a checkpoint after #{checkpoint_id}", every_s=0.2)

    def state(self) -> str:
        assert self.job_id is not None
        return str(rest(self.rest_port, f"/jobs/{self.job_id}").get("state"))

    def failovers(self) -> list[dict]:
        """The job's exception history: every failure (and restart) since it started."""
        assert self.job_id is not None
        history = rest(self.rest_port, f"/jobs/{self.job_id}/exceptions").get(
            "exceptionHistory", {}
        )
        return list(history.get("entries", []))

    def crash(self) -> None:
        """SIGKILL the runner's whole process group: the JVM and Python workers die at once."""
        self.current.kill()

    def stop(self) -> None:
        """Stop whatever still runs, then drop the bulky leftovers (checkpoints, JVM temp
        files: ~20 MB a start); logs stay for artifacts_on_failure."""
        for group in self.starts:
            group.stop()
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        shutil.rmtree(self.work / "jvm-tmp", ignore_errors=True)

    def idle_marks(self) -> list[str]:
        """Flink's "Marking split idle / not idle" lines: a split that comes back from idle
        after another has moved the watermark on may have had its records dropped as late."""
        marks = []
        for log in sorted(self.work.glob("flink-logs-*/*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if "Marking split" in line:
                    marks.append(line[11:23] + " " + line.split("] - ", 1)[-1])
        return marks

    def diagnosis(self) -> str:
        """What to read when a result is missing: the idle marks, the runner's own output."""
        marks = self.idle_marks()
        returns = [m for m in marks if "not idle" in m]
        text = (
            f"{len(marks)} idle/active switches of source splits ({len(returns)} returns from "
            "idle: records of a split returning after another moved the watermark on are late "
            "and dropped; see test_faults_idle.py)"
        )
        return text + ("\n  " + "\n  ".join(marks[:12]) if marks else "")

    def logs(self) -> str:
        return "\n".join(f"--- {g.log_file.name} ---\n{g.log(3000)}" for g in self.starts)


def keep_artifacts(work: Path, name: str) -> Path:
    """Copy runner logs (and Flink's) to .run/test-output/faults/<name> for a person to read."""
    target = Path(os.environ.get("MOEX_TEST_OUTPUT", ROOT / ".run" / "test-output"))
    target = target / "faults" / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for path in list(work.rglob("*.log")) + list(work.rglob("flink-logs-*/*")):
        if path.is_file():
            shutil.copy2(path, target / f"{path.parent.name}-{path.name}")
    return target


# --- comparing outputs ----------------------------------------------------------------------


def _fixed_point(value: Any) -> bool:
    """An integer, or a number with at most 6 decimals as DECIMAL(18, 6) columns print."""
    if isinstance(value, int):
        return True
    return isinstance(value, Decimal) and int(value.as_tuple().exponent) >= -6


def same_value(expected: Any, actual: Any, rel_tol: float = 1e-9) -> bool:
    """Integers and DECIMAL columns exactly, doubles within rel_tol, everything else equal.

    Both sides parse numbers with a fraction as Decimal; a DECIMAL(18, 6) prints at most 6
    decimals, a DOUBLE its shortest repr, so two fixed-point texts that differ are different
    decimals, while a double that differs in its last bits prints more digits."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    numbers = int | float | Decimal
    if isinstance(expected, numbers) and isinstance(actual, numbers):
        if expected == actual:
            return True
        if _fixed_point(expected) and _fixed_point(actual):
            return False
        return math.isclose(float(expected), float(actual), rel_tol=rel_tol, abs_tol=1e-12)
    return expected == actual


def same_row(expected: dict, actual: dict, rel_tol: float = 1e-9) -> bool:
    return set(expected) == set(actual) and all(
        same_value(expected[c], actual[c], rel_tol) for c in expected
    )


@dataclass
class Comparison:
    """Multiset comparison of an output's rows with the expected rows, by grain."""

    name: str
    expected: int
    actual: int
    duplicates: list[tuple] = field(default_factory=list)  # key, copies
    missing: list[tuple] = field(default_factory=list)
    unexpected: list[tuple] = field(default_factory=list)
    different: list[tuple] = field(default_factory=list)  # key, expected, actual

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected or self.different)

    def summary(self, limit: int = 5) -> str:
        lines = [
            f"{self.name}: expected {self.expected} rows, got {self.actual}: "
            f"{len(self.duplicates)} duplicated keys "
            f"({sum(c - 1 for _, c in self.duplicates)} extra rows), {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.different)} with other values"
        ]
        if self.missing:
            ends = sorted(end_ms(row) for _, row in self.missing)
            tickers = Counter(str(row.get("ticker")) for _, row in self.missing)
            lines.append(
                f"  missing rows end between {iso(ends[0])} and {iso(ends[-1])}; "
                f"per ticker {dict(tickers.most_common())}"
            )
        for label, items in (
            ("duplicate", self.duplicates),
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("different", self.different),
        ):
            lines += [f"  {label}: {item}" for item in items[:limit]]
        return "\n".join(lines)


def compare(
    name: str, expected: list[dict], actual: list[dict], grain: Sequence[str]
) -> Comparison:
    def key(row: dict) -> tuple:
        return tuple(str(row.get(c)) for c in grain)

    result = Comparison(name, len(expected), len(actual))
    exp_by: dict[tuple, list[dict]] = defaultdict(list)
    act_by: dict[tuple, list[dict]] = defaultdict(list)
    for row in expected:
        exp_by[key(row)].append(row)
    for row in actual:
        act_by[key(row)].append(row)
    assert all(len(v) == 1 for v in exp_by.values()), f"{name}: the expected rows repeat a key"
    for k, rows in act_by.items():
        if k not in exp_by:
            result.unexpected.append((k, rows[0]))
            continue
        if len(rows) > 1:
            result.duplicates.append((k, len(rows)))
        for row in rows:
            if not same_row(exp_by[k][0], row):
                result.different.append((k, exp_by[k][0], row))
                break
    result.missing = [(k, rows[0]) for k, rows in exp_by.items() if k not in act_by]
    return result


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line, parse_float=Decimal) for line in path.read_text().splitlines() if line]


def volume_by_ticker(candles: Iterable[dict]) -> Counter:
    totals: Counter = Counter()
    for row in candles:
        totals[row["ticker"]] += int(row["volume"])
    return totals


def qty_by_ticker(trades: Iterable[dict]) -> Counter:
    """Lots per ticker over distinct event_ids (the first copy of each counts)."""
    seen: set[str] = set()
    totals: Counter = Counter()
    for row in trades:
        if row["event_id"] in seen:
            continue
        seen.add(row["event_id"])
        totals[row["ticker"]] += int(row["qty"])
    return totals


class TopicTail:
    """Reads a topic from the beginning and keeps up with it (one consumer, assigned by hand)."""

    def __init__(self, bootstrap: str, topic: str, committed: bool = True) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_committed" if committed else "read_uncommitted",
            enable_auto_commit=False,
            group_id=None,
            client_id="faults-tail",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        partitions = wait_for(
            lambda: self.consumer.partitions_for_topic(topic), 30, f"partitions of {topic}"
        )
        self.tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.records: list[Record] = []
        self._rows: list[dict] = []

    def poll(self, timeout_ms: int = 200) -> int:
        before = len(self.records)
        for batch in self.consumer.poll(timeout_ms=timeout_ms).values():
            for r in batch:
                record = Record(r.partition, r.offset, r.key, r.value)
                self.records.append(record)
                if r.value is not None:
                    self._rows.append(record.json())
        return len(self.records) - before

    def drain(self, timeout_s: float = 60.0) -> list[Record]:
        """Read up to the end as it is now (the last stable offset for read_committed)."""
        ends = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout_s
        while any(self.consumer.position(tp) < ends[tp] for tp in self.tps):
            if time.monotonic() > deadline:
                left = {tp.partition: (self.consumer.position(tp), ends[tp]) for tp in self.tps}
                raise AssertionError(f"reading {self.topic} did not reach its end: {left}")
            self.poll(500)
        return self.records

    def rows(self) -> list[dict]:
        """The records read so far, parsed (numbers with a fraction as Decimal)."""
        return self._rows

    def close(self) -> None:
        self.consumer.close()


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def iso_ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def end_ms(row: dict) -> int:
    """When a result row's window (or alert) ends: window_end, end_ts or ts."""
    for column in ("window_end", "end_ts", "ts"):
        if row.get(column) is not None:
            return iso_ms(str(row[column]))
    raise KeyError(f"no end time in {row}")


class artifacts_on_failure:
    """On an exception, copy the logs under `work` to .run/test-output/faults/<name>."""

    def __init__(self, work: Path, name: str) -> None:
        self.work, self.name = work, name

    def __enter__(self) -> artifacts_on_failure:
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is not None:
            target = keep_artifacts(self.work, self.name)
            print(f"\nlogs kept in {target}", file=sys.stderr)


def expected_candles_and_liquidity(session: Session) -> dict[str, list[dict]]:
    """candles_1m and liquidity_1s of the session's records before its sentinels, computed by
    the plain-Python oracle (tests/golden/oracle.py), never by Flink."""
    from tests.golden import oracle

    trades = [t for t in session.trades() if t["ts"] < session.sentinel_ts]
    books = [b for b in load_jsonl(session.orderbook_file) if b["ts"] < session.sentinel_ts]
    return {
        "candles_1m": oracle.candles(oracle.valid_trades(trades), 60_000),
        "liquidity_1s": oracle.liquidity_1s(books),
    }


def merged_input(session: Session) -> list[tuple[str, bytes, bytes]]:
    """(kind, key, value) of the session's files merged by event time as `producer replay` does
    (at one ts: books, then trades, then the phase)."""
    import heapq

    def lines(kind: str, path: Path, rank: int):
        for number, line in enumerate(path.read_text().splitlines()):
            if line:
                row = json.loads(line)
                yield (row["ts"], rank, number), kind, row["ticker"].encode(), line.encode()

    merged = heapq.merge(
        lines("orderbook", session.orderbook_file, 0),
        lines("trades", session.trades_file, 1),
        lines("market_status", session.status_file, 2),
    )
    return [(kind, key, value) for _, kind, key, value in merged]


class Feeder:
    """Publishes records from a thread with an idempotent kafka-python producer (acks=all), at
    `rate` records a second; `rate` may change at any time (a trickle while the job is down keeps
    every partition busy, as a live market does). `inserts[i]` are extra (topic suffix, key,
    value, partition) records sent just before record i: hostile input between good records."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        records: list[tuple[str, bytes, bytes]],
        rate: float,
        inserts: dict[int, list[tuple[str, bytes | None, bytes | None, int | None]]] | None = None,
    ) -> None:
        import threading

        from producer.sinks import HoldingSender, idempotent_producer

        self.prefix = prefix
        self.records = records
        self.rate = rate
        self.inserts = inserts or {}
        self.sent = 0
        self.acked = 0  # records the brokers acknowledged (acks=all)
        self.error: BaseException | None = None
        self.failed_sends: list[BaseException] = []
        self._stop = threading.Event()
        self.done = threading.Event()
        # The producer's own policy: hold (retry, never expire, block when full) while brokers
        # are down, so a fault test sees what the real producer does.
        self._producer = idempotent_producer(
            bootstrap, "faults-feeder", max_request_size=2 * 1024 * 1024
        )
        self._sender = HoldingSender(self._producer, bootstrap, stop=self._stop)
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _send(self, topic: str, key: bytes | None, value: bytes | None, partition=None) -> None:
        future = self._sender.send(topic, key, value, partition)
        future.add_errback(self.failed_sends.append)
        future.add_callback(self._acknowledged)

    def _acknowledged(self, _metadata: object) -> None:
        self.acked += 1  # on the producer's I/O thread; only read for progress

    def _run(self) -> None:
        try:
            next_at = time.monotonic()
            for number, (kind, key, value) in enumerate(self.records):
                if self._stop.is_set():
                    return
                for suffix, extra_key, extra_value, partition in self.inserts.get(number, []):
                    self._send(f"{self.prefix}{suffix}", extra_key, extra_value, partition)
                self._send(f"{self.prefix}{kind}", key, value)
                self.sent = number + 1
                now = time.monotonic()
                next_at = max(next_at, now - 0.5) + 1.0 / self.rate  # no catch-up burst
                if next_at - now > 0.002:
                    self._stop.wait(next_at - now)
            self._producer.flush(60)
        except BaseException as exc:  # reported by wait_done
            self.error = exc
        finally:
            self.done.set()

    def wait_done(self, timeout_s: float) -> int:
        assert self.done.wait(timeout_s), f"feed not done after {timeout_s} s ({self.sent} sent)"
        assert self.error is None, f"feeder failed: {self.error!r}"
        assert not self.failed_sends, f"{len(self.failed_sends)} records not acknowledged"
        return self.sent

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._producer.close(10)


# --- the batch oracle -----------------------------------------------------------------------


class ReplayOracle:
    """`python -m runner replay` over a session's files: what the live job must produce.

    Its outputs are cached under .run/test-cache/faults-replay/<hash>, the hash covering the
    input files and everything the replay runs (sql/, udfs/, runner/, the PyFlink and connector
    versions), so a second run of the tests skips a minute of Flink unless something changed.
    """

    def __init__(self, session: Session, work: Path) -> None:
        self.session = session
        self.work = work
        self.cache = ROOT / ".run" / "test-cache" / "faults-replay" / self._digest()
        self.group: Group | None = None

    def _digest(self) -> str:
        import hashlib

        digest = hashlib.sha256()
        files = [self.session.trades_file, self.session.orderbook_file, self.session.status_file]
        for folder, pattern in (("sql", "*.sql"), ("udfs", "*.py"), ("runner", "*.py")):
            files += sorted((ROOT / folder).rglob(pattern))
        for path in files:
            digest.update(
                str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name).encode()
            )
            digest.update(path.read_bytes())
        from importlib.metadata import version

        from stack.paths import connector_jar

        digest.update(f"pyflink {version('apache-flink')} {connector_jar().name}".encode())
        return digest.hexdigest()[:20]

    @property
    def cached(self) -> bool:
        return (self.cache / ".complete").exists()

    def start(self) -> ReplayOracle:
        if self.cached:
            return self
        out = self.work / "replay"
        self.group = Group(
            [
                sys.executable,
                "-m",
                "runner",
                "replay",
                "--trades",
                str(self.session.trades_file),
                "--orderbook",
                str(self.session.orderbook_file),
                "--status",
                str(self.session.status_file),
                "--out",
                str(out),
            ],  # fmt: skip
            self.work / "replay.log",
            env={
                "JVM_ARGS": f"-Xmx768m -Xms128m -XX:+UseG1GC -Djava.io.tmpdir={self.work}",
                "FLINK_LOG_DIR": str(self.work / "replay-logs"),
            },
        ).start()
        return self

    def wait(self, timeout_s: float = 300.0) -> Path:
        """The folder of <output>.jsonl files, once the replay has finished."""
        if self.cached:
            return self.cache
        assert self.group is not None, "start() first"
        code = self.group.wait(timeout_s)
        assert code == 0, f"runner replay exited {code}:\n{self.group.log()}"
        out = self.work / "replay"
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        staging = self.cache.with_name(self.cache.name + f".{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for path in out.glob("*.jsonl"):
            shutil.copy2(path, staging / path.name)
        (staging / ".complete").touch()
        shutil.rmtree(self.cache, ignore_errors=True)
        staging.rename(self.cache)
        shutil.rmtree(out, ignore_errors=True)
        # Keep the newest few results: older ones belong to sql/ as it was.
        entries = sorted(self.cache.parent.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in entries[:-4]:
            shutil.rmtree(old, ignore_errors=True)
        return self.cache

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
        shutil.rmtree(self.work / "replay", ignore_errors=True)
        for leftover in self.work.glob("flink-*"):  # the replay JVM's temp files
            shutil.rmtree(leftover, ignore_errors=True)
