"""The one process toolkit: process groups, readiness waits with a deadline, process trees.

Used by `make up` (stack/up.py, stack/cluster.py), the Kafka launcher (stack/kafka.py), the
benchmarks and the tests. Every child runs in its own session, so its pid is its process
group id and stopping the group stops what it started (a Flink JVM, its Python workers).
Process trees and resident memory come from psutil (it replaced five hand-written /proc
walkers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

from moex.paths import ROOT

T = TypeVar("T")

# What a readiness check may raise while the thing it checks is still starting: a refused
# connection (URLError is an OSError), a half-written reply, a key not there yet.
NOT_READY_YET: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError)


class WaitTimeout(AssertionError, TimeoutError):
    """A wait ran past its deadline: a failed assertion in a test, a TimeoutError elsewhere."""


class ProcessExited(RuntimeError):
    """The process a wait depended on exited before the wait was over."""


def wait_for(
    check: Callable[[], T],
    timeout_s: float,
    what: str,
    every_s: float = 0.25,
    *,
    retry_on: tuple[type[BaseException], ...] = NOT_READY_YET,
    fatal: tuple[type[BaseException], ...] = (),
    group: ProcessGroup | None = None,
) -> T:
    """Poll `check` until it returns something truthy and return that.

    Exceptions of `retry_on` count as "not yet", unless they are `fatal`; anything else
    propagates at once. With a
    `group`, its exit ends the wait early with the tail of its log. Fails after `timeout_s`
    naming `what` and the last error seen."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        if group is not None and not group.running():
            raise ProcessExited(
                f"{group.name} exited with {group.returncode} while waiting for {what}:\n"
                f"{group.tail()}"
            )
        try:
            value = check()
            if value:
                return value
        except retry_on as exc:
            if isinstance(exc, fatal):
                raise
            last_error = exc
        if time.monotonic() >= deadline:
            tail = f"\n{group.tail()}" if group is not None else ""
            raise WaitTimeout(
                f"timed out after {timeout_s:.0f} s waiting for {what} "
                f"(last error: {last_error}){tail}"
            )
        time.sleep(every_s)


# --- process groups -------------------------------------------------------------------------


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left (zombies not yet reaped count)."""
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of group `pgid`."""
    pids = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                pids.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return pids


def stop_group(pgid: int, timeout_s: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """SIGTERM the group, SIGKILL what is left after `timeout_s`; returns when none is left.

    `process`, the group's leader started by this process, is reaped on the way."""

    def gone() -> bool:
        if process is not None:
            process.poll()
        return not group_members(pgid)

    if gone():
        return
    signal_group(pgid, signal.SIGCONT)  # a stopped (SIGSTOP) member would not see SIGTERM
    signal_group(pgid, signal.SIGTERM)
    try:
        wait_for(gone, timeout_s, f"process group {pgid} to stop", every_s=0.1)
        return
    except WaitTimeout:
        pass
    kill_group(pgid, 15.0, process)


def kill_group(pgid: int, timeout_s: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """SIGKILL the whole group (a power cut) and wait until no member is left."""
    signal_group(pgid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout_s)
    wait_for(lambda: not group_members(pgid), timeout_s, f"process group {pgid} to be gone")


class ProcessGroup:
    """A command in its own session (process group), its output appended to a log file.

    `env` is the child's whole environment (None: this process's own)."""

    def __init__(
        self,
        command: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        name: str | None = None,
    ) -> None:
        self.command = list(command)
        self.log_file = log_file
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.name = name or Path(self.command[0]).name
        self.process: subprocess.Popen | None = None
        self.started_wall = 0.0  # time.time() of the latest start
        self.started = 0.0  # time.monotonic() of the latest start

    def start(self, header: bool = False) -> ProcessGroup:
        """Launch; with `header`, first a `--- date command` line in the log (a log shared by
        several starts tells them apart)."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            if header:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"\n--- {stamp} {' '.join(self.command)}\n".encode())
                log.flush()
            self.started_wall, self.started = time.time(), time.monotonic()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() first"
        return self.process.pid

    @property
    def pgid(self) -> int:
        return self.pid  # a session leader's pid is its group id

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def members(self) -> list[int]:
        """Pids of the group still alive."""
        return [] if self.process is None else group_members(self.pgid)

    def signal(self, signum: int) -> None:
        if self.process is not None:
            signal_group(self.pgid, signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None, "start() first"
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the group, SIGKILL what is left after the timeout; always leaves nothing."""
        if self.process is not None:
            stop_group(self.pgid, timeout_s, self.process)

    def kill(self, timeout_s: float = 30.0) -> None:
        """SIGKILL the whole group and wait until no member is left."""
        if self.process is not None:
            kill_group(self.pgid, timeout_s, self.process)

    def rss_mib(self) -> float:
        return tree_rss_mib(self.pid) if self.running() else 0.0

    def log(self, tail: int = 4000) -> str:
        """The last `tail` characters of the log."""
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text[-tail:]

    def tail(self, lines: int = 25) -> str:
        """The last `lines` lines of the log."""
        return tail(self.log_file, lines)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- process trees --------------------------------------------------------------------------


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children, ...)."""
    return {process.pid for process in tree(pid)[1:]}


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue  # exited meanwhile
    return total / (1024 * 1024)


def listening_ports(pid: int) -> list[int]:
    """TCP ports a process listens on."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return []
    return sorted({c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN})
