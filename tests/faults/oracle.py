"""What the live job must produce: the batch replay of the same session (cached), the
plain-Python oracle's candles, and per-ticker totals."""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from moex.paths import ROOT
from tests.faults.session import Session
from tests.golden.compare import load_jsonl
from tests.processes import Group


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

        from moex.paths import connector_jar

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
