"""`python -m runner warm`: one JVM kept warm, so that short replays and backtests start in
seconds.

A replay's fixed cost is mostly starting things: the JVM, its class loading and JIT, Flink's
translation of the plan (docs/performance.md, Engine). The warm process starts the JVM once,
runs a small replay to load and compile that code, then serves replays over a Unix socket
(RUN/warm.sock): `python -m runner replay` or `backtest` of <= QUICK_START_MAX_TRADES trades
finds the socket and sends its command line, working folder and MOEX_*/KAFKA_* variables; the
warm process runs the very same command in its JVM and streams its output and exit code back.
Each replay is still its own job on its own MiniCluster, with its own Python workers.

One replay at a time: a second one while it is busy runs in its own JVM, as without it. A larger
replay also does (the warm JVM runs C1 only, which suits short jobs: runner/flink_env.py), so
does one that sets --jvm-heap-mb or FLINK_HEAP_MB (a running JVM's heap is fixed), and so does
every replay once the project's Python code has changed since the warm process started (it
would run the old code: restart it). MOEX_WARM=0
turns the client side off. The JVM's own output goes to the warm process's stdout, not to the
client. A client interrupted by Ctrl-C leaves its replay to finish in the warm JVM (into its
--out folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from moex.paths import ROOT, RUN
from runner.replay import QUICK_START_MAX_TRADES
from runner.settings import Settings

ENV_PREFIXES = ("MOEX_", "KAFKA_")  # the settings a request carries (runner/settings.py)
CONNECT_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 30.0
BUSY_READ_TIMEOUT_S = 5.0
WARMUP_TRADES = 300
CODE_PACKAGES = ("runner", "udfs", "producer", "moex")  # what a replay imports
COMMANDS = ("replay", "backtest")  # the runner commands the warm JVM serves
SERVED_MARK = "in the warm JVM (pid"  # in the first line a served command prints (stderr)

_serving = False  # set in the warm process: its own replays must not call itself


def socket_path() -> Path:
    return RUN / "warm.sock"


def pid_path() -> Path:
    return RUN / "warm.pid"  # not in RUN/pids: that is `make up`'s registry of process groups


# --- the client side: `runner replay` --------------------------------------------------------


def _trade_lines(path: Path, limit: int) -> int:
    """Lines of the trades file, counting stops past `limit`."""
    count = 0
    with open(path, "rb") as lines:
        for count, _ in enumerate(lines, 1):
            if count > limit:
                break
    return count


def _connect() -> socket.socket | None:
    path = socket_path()
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(str(path))
    except OSError:  # a socket file left by a warm process that was killed
        sock.close()
        return None
    return sock


def try_warm(command: str, argv: list[str], trades: Path) -> int | None:
    """Run `runner <command> argv` (a replay or a backtest) in the warm JVM if one serves this
    checkout's RUN and the replay suits it: its exit code, or None to run it here."""
    if _serving or os.environ.get("MOEX_WARM", "1") == "0" or command not in COMMANDS:
        return None
    own_heap = "FLINK_HEAP_MB" in os.environ or any(a.startswith("--jvm-heap-mb") for a in argv)
    if own_heap or not trades.is_file():
        return None
    if _trade_lines(trades, QUICK_START_MAX_TRADES) > QUICK_START_MAX_TRADES:
        return None
    sock = _connect()
    if sock is None:
        return None
    request = {
        "command": command,
        "argv": argv,
        "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)},
    }
    answered = False
    try:
        sock.sendall((json.dumps(request) + "\n").encode())
        sock.settimeout(None)
        for line in sock.makefile("r", encoding="utf-8"):
            answered = True
            message = json.loads(line)
            if message.get("stale"):
                print(
                    f"runner: the warm JVM runs older code ({message['stale']} changed since it "
                    "started; restart `make warm`); starting a JVM",
                    flush=True,
                )
                return None
            if message.get("busy"):
                print(
                    "runner: the warm JVM is busy with another replay; starting a JVM",
                    flush=True,
                )
                return None
            if "out" in message:
                sys.stdout.write(message["out"])
                sys.stdout.flush()
            if "err" in message:
                sys.stderr.write(message["err"])
                sys.stderr.flush()
            if "exit" in message:
                return int(message["exit"])
    except OSError:
        pass
    finally:
        sock.close()
    if not answered:  # it stopped before taking the replay: run it here
        return None
    print(
        "runner: the warm JVM went away during the replay (see the output of `make warm`)",
        file=sys.stderr,
    )
    return 1


# --- the warm process -------------------------------------------------------------------------


def _send(conn: socket.socket, message: dict) -> None:
    """One message of the protocol: a JSON object on a line."""
    conn.sendall((json.dumps(message) + "\n").encode())


class _Stream:
    """A text stream that sends what is written to the client as {"out"|"err": text} lines;
    once the client has gone, the rest is dropped (the replay itself carries on)."""

    def __init__(self, conn: socket.socket, key: str, lock: threading.Lock) -> None:
        self.conn, self.key, self.lock = conn, key, lock
        self.gone = False

    def write(self, text: str) -> int:
        if text and not self.gone:
            with self.lock:
                try:
                    _send(self.conn, {self.key: text})
                except OSError:
                    self.gone = True
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _as_client(request: dict):
    """The client's working folder and MOEX_*/KAFKA_* variables for the length of its replay."""
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    try:
        os.chdir(request["cwd"])
        for key in [k for k in os.environ if k.startswith(ENV_PREFIXES)]:
            del os.environ[key]
        os.environ.update(
            {k: v for k, v in request.get("env", {}).items() if k.startswith(ENV_PREFIXES)}
        )
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _run(command: str, argv: list[str]) -> int:
    from runner.cli import main

    try:
        return int(main([command, *argv]) or 0)
    except SystemExit as exc:  # argparse: bad options
        return exc.code if isinstance(exc.code, int) else 2
    except Exception:
        traceback.print_exc()
        return 1


def code_snapshot(root: Path = ROOT) -> dict[str, float]:
    """Modification times of the project's Python code: the warm process imported it once,
    and in a MiniCluster the Python UDFs run inside this process (PyFlink's loopback mode)."""
    return {
        str(path): path.stat().st_mtime
        for package in CODE_PACKAGES
        for path in sorted((root / package).rglob("*.py"))
    }


def changed_code(snapshot: dict[str, float], root: Path = ROOT) -> list[str]:
    now = code_snapshot(root)
    return sorted(
        str(Path(p).relative_to(root))
        for p in set(now) | set(snapshot)
        if now.get(p) != snapshot.get(p)
    )


def _handle(conn: socket.socket, snapshot: dict[str, float]) -> None:
    with conn:
        conn.settimeout(REQUEST_TIMEOUT_S)  # a client sends its request as soon as it connects
        try:
            request = json.loads(conn.makefile("r", encoding="utf-8").readline())
        except (OSError, ValueError):
            print("warm: a connection sent no request; dropped", flush=True)
            return
        conn.settimeout(None)
        changed = changed_code(snapshot)
        if changed:
            shown = ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
            print(f"warm: refused a replay: code changed since the start ({shown})", flush=True)
            with contextlib.suppress(OSError):
                _send(conn, {"stale": shown})
            return
        command = request["command"]
        lock = threading.Lock()
        out, err = _Stream(conn, "out", lock), _Stream(conn, "err", lock)
        started = time.monotonic()
        err.write(f"runner: running {command} {SERVED_MARK} {os.getpid()}, {socket_path()})\n")
        with _as_client(request), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _run(command, request["argv"])
        print(
            f"warm: {command} {request['argv']} -> exit {code} in "
            f"{time.monotonic() - started:.1f} s"
        )
        with contextlib.suppress(OSError):
            _send(conn, {"exit": code})


def _warm_up(work: Path) -> float:
    """Run a small replay so that the classes are loaded and compiled before a user's."""
    started = time.monotonic()
    inputs = work / "inputs"
    subprocess.run(
        [sys.executable, "-m", "producer", "synthetic", "--seed", "1",
         "--max-events", str(WARMUP_TRADES), "--out", str(inputs)],
        check=True, capture_output=True,
    )  # fmt: skip
    with (
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
        contextlib.redirect_stderr(devnull),
    ):
        code = _run(
            "replay",
            ["--trades", str(inputs / "trades.jsonl"), "--orderbook", str(inputs / "orderbook.jsonl"),
             "--status", str(inputs / "market_status.jsonl"), "--out", str(work / "out")]
        )  # fmt: skip
    if code != 0:
        raise RuntimeError(f"the warm-up replay failed (exit {code})")
    return time.monotonic() - started


def serve(settings: Settings) -> int:
    global _serving
    _serving = True
    path = socket_path()
    probe = _connect()
    if probe is not None:
        probe.close()
        print(f"runner: a warm JVM already serves {path}", file=sys.stderr)
        return 1
    started = time.monotonic()
    from runner.flink_env import prepare_jvm_environment

    prepare_jvm_environment(settings, quick_start=True)
    snapshot = code_snapshot()
    with tempfile.TemporaryDirectory(prefix="moex-warm-") as tmp:
        print(
            f"runner: warming a JVM up with a {WARMUP_TRADES}-trade replay ...", end="", flush=True
        )
        print(f" done in {_warm_up(Path(tmp)):.1f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    pid_path().parent.mkdir(parents=True, exist_ok=True)
    pid_path().write_text(str(os.getpid()))
    print(
        f"runner: warm JVM ready after {time.monotonic() - started:.0f} s on {path}: "
        f"`python -m runner replay` or `backtest` of <= {QUICK_START_MAX_TRADES:,} trades "
        "runs here "
        "(Ctrl-C stops)",
        flush=True,
    )
    requests: queue.Queue[socket.socket] = queue.Queue()
    busy = threading.Event()
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if busy.is_set():
                # Read the request before answering: closing a socket with unread data resets
                # the connection, and the client would lose the answer.
                with conn, contextlib.suppress(OSError):
                    conn.settimeout(BUSY_READ_TIMEOUT_S)
                    conn.makefile("r", encoding="utf-8").readline()
                    _send(conn, {"busy": True})
                    conn.shutdown(socket.SHUT_WR)
                continue
            busy.set()
            requests.put(conn)

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=accept, name="warm-accept", daemon=True).start()
    try:
        # Replays run on this (the main) thread: py4j hands each thread its own connection,
        # and only this one has the class loader PyFlink set up (docs/flink-job.md).
        while not stopping.is_set():
            try:
                conn = requests.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                _handle(conn, snapshot)
            except Exception:
                traceback.print_exc()
            finally:
                busy.clear()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        path.unlink(missing_ok=True)
        pid_path().unlink(missing_ok=True)
    print("runner: warm JVM stopped", flush=True)
    return 0
