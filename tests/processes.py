"""The process toolkit (stack/proc.py) as tests use it: children get the test environment
(tests/environ.py), and a wait also retries on httpx errors (the gateway's HTTP clients)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from moex.paths import ROOT
from stack import proc
from stack.proc import descendants  # noqa: F401  (re-exported: the tests import it from here)
from tests.environ import clean_environ

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after the deadline."""
    return proc.wait_for(
        check, timeout_s, what, every_s, retry_on=(*proc.NOT_READY_YET, httpx.HTTPError)
    )


class Group(proc.ProcessGroup):
    """A command in its own session/process group, logging to a file, in the test environment."""

    def __init__(
        self,
        command: Sequence[str],
        log_file: Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        environ = {**clean_environ(), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        super().__init__(command, log_file, environ, cwd)
