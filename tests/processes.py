"""Processes and polling for tests: every child in its own process group, every wait with a
deadline. Shared by the gateway helpers, the browser test and the fault tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from moex.paths import ROOT
from tests.environ import clean_environ

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:  # URLError is an OSError
            last_error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error})"
            )
        time.sleep(every_s)


class Group:
    """A command in its own session/process group, logging to a file."""

    def __init__(
        self,
        command: Sequence[str],
        log_file: Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.command = list(command)
        self.log_file = log_file
        self.cwd = cwd
        self.env = {**clean_environ(), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> Group:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid  # a session leader's pid is its group id

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def members(self) -> list[int]:
        """Pids of the group still alive (from /proc)."""
        if self.process is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.pgid and fields[0] != "Z":
                pids.append(int(entry.name))
        return pids

    def kill(self, timeout_s: float = 30.0) -> None:
        """SIGKILL the whole group and wait until no member is left."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout_s)
        wait_for(lambda: not self.members(), timeout_s, f"process group {self.pgid} to be gone")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the group, SIGKILL what is left after the timeout; always leaves nothing."""
        if self.process is None:
            return
        if self.running():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        if self.members():
            self.signal(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)
        wait_for(lambda: not self.members(), 15, f"process group {self.pgid} to be gone")

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass

    def log(self, tail: int = 4000) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text[-tail:]


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    continue
                if ppid == parent and int(entry.name) not in found:
                    found.add(int(entry.name))
                    todo.append(int(entry.name))
    return found
