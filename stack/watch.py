"""`make up WATCH=1`: reload the running job when a file in sql/ or udfs/ is saved.

The supervisor of `make up` calls `SourceWatcher.changed()` once a second. A change is acted on
once the folder has been quiet for `settle_s` (an editor's save can be several writes, and
several files may be saved together); then `runner reload` runs as `make reload` would and its
report is printed in the terminal of `make up`. A reload that fails (a bad file) leaves the job
untouched, as `make reload` does; the next save tries again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

WATCHED_SUFFIXES = (".sql", ".py")


def snapshot(folders: Iterable[Path]) -> dict[Path, int]:
    """The modification time (ns) of every watched file below `folders`."""
    files: dict[Path, int] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.suffix in WATCHED_SUFFIXES and "__pycache__" not in path.parts:
                try:
                    files[path] = path.stat().st_mtime_ns
                except FileNotFoundError:  # removed while we walked
                    continue
    return files


def describe(before: dict[Path, int], after: dict[Path, int], root: Path) -> list[str]:
    """`added x`, `removed y`, `changed z` for the files that differ, paths relative to root."""
    lines = []
    for path in sorted(set(before) | set(after)):
        what = (
            "added" if path not in before
            else "removed" if path not in after
            else "changed" if before[path] != after[path]
            else None
        )  # fmt: skip
        if what:
            lines.append(f"{what} {path.relative_to(root) if path.is_relative_to(root) else path}")
    return lines


class SourceWatcher:
    """Polls `folders`; `changed()` returns the list of changes once they have settled."""

    def __init__(
        self,
        folders: list[Path],
        root: Path,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders = folders
        self.root = root
        self.settle_s = settle_s
        self.clock = clock
        self.seen = snapshot(folders)  # what the running job was built from
        self.pending: dict[Path, int] | None = None
        self.pending_since = 0.0

    def changed(self) -> list[str]:
        now = snapshot(self.folders)
        if now == self.seen:
            self.pending = None
            return []
        if now != self.pending:  # still being written: wait until it stops moving
            self.pending, self.pending_since = now, self.clock()
            return []
        if self.clock() - self.pending_since < self.settle_s:
            return []
        changes = describe(self.seen, now, self.root)
        self.seen, self.pending = now, None
        return changes


def reload_command(python: str = sys.executable) -> list[str]:
    return [python, "-m", "runner", "reload"]


def run_reload(changes: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    """Print what changed, run `runner reload` with its output in this terminal, say the end."""
    print(f"\nwatch: {', '.join(changes)}: reloading the job", flush=True)
    started = time.monotonic()
    code = subprocess.call(reload_command(), cwd=cwd, env=env)
    verdict = (
        "reloaded" if code == 0 else f"reload refused (exit {code}); the job runs on as it was"
    )
    print(f"watch: {verdict} in {time.monotonic() - started:.1f}s", flush=True)
    return code
