"""The process toolkit (stack/proc.py) on real processes: a group with a child of its own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack import proc

# A parent that starts a child of its own and ignores SIGTERM: stop() must SIGKILL both.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('started', flush=True); time.sleep(60)",
]


def test_process_group_when_stopped_then_its_whole_tree_is_gone(tmp_path: Path) -> None:
    group = proc.ProcessGroup(STUBBORN, tmp_path / "stubborn.log", name="stubborn").start()
    try:
        proc.wait_for(lambda: "started" in group.log(), 30, "the child to start")
        child = proc.wait_for(lambda: proc.descendants(group.pid), 10, "the child process")
        assert set(group.members()) == {group.pid, *child}
        assert group.rss_mib() > proc.tree_rss_mib(next(iter(child))) > 1
    finally:
        group.stop(timeout_s=1)
    assert group.members() == [] and group.returncode is not None


def test_wait_for_when_deadline_passes_then_assertion_and_timeout_error() -> None:
    with pytest.raises(proc.WaitTimeout) as caught:
        proc.wait_for(lambda: False, 0.3, "nothing", every_s=0.05)
    assert isinstance(caught.value, AssertionError) and isinstance(caught.value, TimeoutError)
    assert "waiting for nothing" in str(caught.value)


def test_wait_for_when_process_exits_then_fails_at_once_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"]
    group = proc.ProcessGroup(command, tmp_path / "exits.log", name="exits").start()
    with pytest.raises(proc.ProcessExited, match="exits exited with 3(.|\n)*bad config"):
        proc.wait_for(lambda: False, 30, "readiness", every_s=0.05, group=group)


def test_wait_for_when_check_raises_other_errors_then_they_propagate() -> None:
    def broken() -> bool:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        proc.wait_for(broken, 5, "a broken check")
    calls = []

    def refused() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError  # not up yet: retried
        return True

    assert proc.wait_for(refused, 5, "a server", every_s=0.01) is True
