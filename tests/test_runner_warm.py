"""`python -m runner warm` (runner/warm.py): a replay or a backtest sent to the warm JVM writes
the same rows as one in its own JVM, a replay arriving while the warm JVM is busy runs in its
own, and a socket left by a killed warm process is ignored."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from moex.paths import ROOT
from runner.warm import SERVED_MARK
from tests.environ import clean_environ
from tests.golden.compare import load_jsonl, same_row
from tests.processes import Group, wait_for

READY = "warm JVM ready"
VIA_WARM = SERVED_MARK
BUSY = "the warm JVM is busy"


def _replay(
    inputs: Path, out: Path, env: dict[str, str], command: tuple[str, ...] = ("replay",)
) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "runner", *command,
        "--trades", str(inputs / "trades.jsonl"), "--orderbook", str(inputs / "orderbook.jsonl"),
        "--status", str(inputs / "market_status.jsonl"), "--out", str(out),
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _assert_same_rows(own: Path, warm: Path) -> None:
    """The same rows in the same order; DOUBLE values within 1e-12 relative, everything else
    exactly (tests/golden/compare.same_row). Sums of doubles in window aggregates
    (obstats_5m's averages) depend on how the two-phase window aggregation (a local one
    flushing partial sums, then the global one) happened to split the rows, which varies from
    run to run: a fresh-clone CI run saw one such average differ in its
    16th digit between two runs of the same job."""
    mine, theirs = load_jsonl(own), load_jsonl(warm)
    assert len(mine) == len(theirs), (own.name, len(mine), len(theirs))
    for a, b in zip(mine, theirs, strict=True):
        assert same_row(a, b, rel_tol=1e-12), (own.name, a, b)


def test_warm_when_replays_then_same_rows_as_own_jvm_and_busy_falls_back(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    subprocess.run(
        [sys.executable, "-m", "producer", "synthetic", "--seed", "11", "--max-events", "1500",
         "--out", str(inputs)],
        cwd=ROOT, env=clean_environ(), check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    env = {**clean_environ(), "MOEX_RUN_DIR": str(tmp_path / "run")}
    server = Group([sys.executable, "-m", "runner", "warm"], tmp_path / "warm.log", env).start()
    try:
        wait_for(lambda: READY in server.log(), 300, "the warm JVM ready")
        assert server.running(), server.log()

        warm = _replay(inputs, tmp_path / "warm-out", env)
        assert warm.returncode == 0, warm.stdout + warm.stderr
        assert VIA_WARM in warm.stderr, warm.stderr
        assert "replayed 1500 trades" in warm.stdout, warm.stdout

        # Busy: a connection that has not sent its request yet holds the warm JVM (up to 30 s),
        # so this replay runs in a JVM of its own, as without the warm one.
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.connect(str(tmp_path / "run" / "warm.sock"))
        try:
            own = _replay(inputs, tmp_path / "own-out", env)
        finally:
            holder.close()
        assert own.returncode == 0, own.stdout + own.stderr
        assert BUSY in own.stdout and VIA_WARM not in own.stderr, own.stdout + own.stderr

        files = sorted(p.name for p in (tmp_path / "own-out").glob("*.jsonl"))
        assert len(files) >= 17 and files == sorted(
            p.name for p in (tmp_path / "warm-out").glob("*.jsonl")
        )
        for name in files:
            _assert_same_rows(tmp_path / "own-out" / name, tmp_path / "warm-out" / name)
        assert any((tmp_path / "own-out" / n).read_text() for n in files)

        # A backtest goes there too, and writes what one in its own JVM writes.
        backtest = ("backtest", "--strategy", "all")
        warm_bt = _replay(inputs, tmp_path / "warm-bt", env, backtest)
        assert warm_bt.returncode == 0, warm_bt.stdout + warm_bt.stderr
        assert "running backtest in the warm JVM" in warm_bt.stderr, warm_bt.stderr
        assert "report: " in warm_bt.stdout, warm_bt.stdout
        own_bt = _replay(inputs, tmp_path / "own-bt", {**env, "MOEX_WARM": "0"}, backtest)
        assert own_bt.returncode == 0, own_bt.stdout + own_bt.stderr
        assert VIA_WARM not in own_bt.stderr, own_bt.stderr
        results = sorted(p.name for p in (tmp_path / "own-bt").glob("*.jsonl"))
        # 3 strategies (rows, round trips), the candles and indicators the report draws
        assert len(results) == 8, results
        assert (tmp_path / "own-bt" / "ema_cross_12_26.jsonl").read_text(), results
        assert results == sorted(p.name for p in (tmp_path / "warm-bt").glob("*.jsonl"))
        for name in results:
            _assert_same_rows(tmp_path / "own-bt" / name, tmp_path / "warm-bt" / name)
        assert (tmp_path / "warm-bt" / "report.html").stat().st_size > 10_000
    finally:
        server.stop()
    assert "warm JVM stopped" in server.log(), server.log()
    assert not (tmp_path / "run" / "warm.sock").exists()


def _small_trades(tmp_path: Path) -> Path:
    trades = tmp_path / "trades.jsonl"
    trades.write_text('{"ticker": "SBER"}\n{"ticker": "SBER"}\n')
    return trades


def _stand_in(tmp_path: Path, monkeypatch, reply) -> tuple[socket.socket, threading.Thread]:
    """A stand-in warm process on tmp_path/warm.sock: each connection's request line is read
    and handed with the connection to `reply(conn, request)`."""
    from runner import warm

    path = tmp_path / "warm.sock"
    monkeypatch.setattr(warm, "socket_path", lambda: path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                reply(conn, json.loads(conn.makefile("r").readline()))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_warm_client_when_socket_left_by_killed_process_then_runs_itself(
    tmp_path: Path, monkeypatch
) -> None:
    from runner import warm

    monkeypatch.setattr(warm, "socket_path", lambda: tmp_path / "warm.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "warm.sock"))
    stale.close()  # the file stays, nobody listens
    trades = _small_trades(tmp_path)
    assert (tmp_path / "warm.sock").exists()
    assert warm.try_warm("replay", ["--trades", str(trades), "--out", "x"], trades) is None


def test_warm_client_when_listening_then_sends_unless_off_large_or_own_heap(
    tmp_path: Path, monkeypatch
) -> None:
    """Which replays and backtests go to the warm JVM: a stand-in server answers exit 7 to
    whatever it gets."""
    from runner import warm

    received: list[dict] = []

    def answer(conn: socket.socket, request: dict) -> None:
        received.append(request)
        conn.sendall(b'{"out": "hello\\n"}\n{"exit": 7}\n')

    server, _ = _stand_in(tmp_path, monkeypatch, answer)
    trades = _small_trades(tmp_path)
    argv = ["--trades", str(trades), "--out", "x"]
    monkeypatch.setenv("MOEX_ONLY", "candles_1m")
    try:
        assert warm.try_warm("replay", argv, trades) == 7
        assert received[-1]["argv"] == argv and received[-1]["env"]["MOEX_ONLY"] == "candles_1m"
        assert received[-1]["command"] == "replay"
        assert warm.try_warm("backtest", ["--strategy", "all", *argv], trades) == 7
        assert received[-1]["command"] == "backtest"
        assert warm.try_warm("run", argv, trades) is None  # only replays and backtests
        assert warm.try_warm("replay", [*argv, "--jvm-heap-mb", "2048"], trades) is None
        monkeypatch.setenv("FLINK_HEAP_MB", "2048")  # the warm JVM's heap is fixed
        assert warm.try_warm("replay", argv, trades) is None
        monkeypatch.delenv("FLINK_HEAP_MB")
        monkeypatch.setattr(warm, "QUICK_START_MAX_TRADES", 1)  # this file is "large" now
        assert warm.try_warm("replay", argv, trades) is None
        monkeypatch.setattr(warm, "QUICK_START_MAX_TRADES", 100)
        monkeypatch.setenv("MOEX_WARM", "0")
        assert warm.try_warm("replay", argv, trades) is None
        assert len(received) == 2
    finally:
        server.close()


def test_warm_when_code_changed_since_start_then_names_the_files(tmp_path: Path) -> None:
    from runner import warm

    (tmp_path / "udfs").mkdir()
    (tmp_path / "udfs" / "algopack.py").write_text("x = 1\n")
    snapshot = warm.code_snapshot(tmp_path)
    assert warm.changed_code(snapshot, tmp_path) == []
    (tmp_path / "udfs" / "new.py").write_text("y = 2\n")
    os.utime(tmp_path / "udfs" / "algopack.py", (1, 1))
    assert warm.changed_code(snapshot, tmp_path) == ["udfs/algopack.py", "udfs/new.py"]


def test_warm_client_when_server_closes_before_answering_then_runs_itself(
    tmp_path: Path, monkeypatch
) -> None:
    from runner import warm

    hung_up = threading.Event()

    def hang_up(conn: socket.socket, request: dict) -> None:
        hung_up.set()  # stopping: the request is read, never answered

    server, _ = _stand_in(tmp_path, monkeypatch, hang_up)
    trades = _small_trades(tmp_path)
    try:
        assert warm.try_warm("replay", ["--trades", str(trades), "--out", "x"], trades) is None
        assert hung_up.wait(5)
    finally:
        server.close()
