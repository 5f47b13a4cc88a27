"""`make up WATCH=1`'s watcher: a saved file triggers one reload once the saves have settled."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from stack.watch import SourceWatcher


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def touch(path: Path, text: str, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_watcher_when_file_saved_twice_then_one_change_after_it_settles(tmp_path: Path) -> None:
    sql, udfs = tmp_path / "sql", tmp_path / "udfs"
    touch(sql / "20_candles" / "candles_1m.sql", "a", 1_000)
    touch(udfs / "indicators.py", "b", 1_000)
    clock = Clock()
    watcher = SourceWatcher([sql, udfs], tmp_path, settle_s=1.0, clock=clock)
    assert watcher.changed() == []

    touch(sql / "45_volume" / "obv_1m.sql", "new", 2_000)
    assert watcher.changed() == []  # first sight: wait for the saves to settle
    clock.now += 0.5
    touch(udfs / "indicators.py", "b2", 3_000)  # a second save restarts the wait
    assert watcher.changed() == []
    clock.now += 0.9
    assert watcher.changed() == []
    clock.now += 0.2
    assert watcher.changed() == ["added sql/45_volume/obv_1m.sql", "changed udfs/indicators.py"]
    clock.now += 5
    assert watcher.changed() == []  # reported once


def test_watcher_when_file_removed_or_cache_written_then_only_sources_count(tmp_path: Path) -> None:
    sql = tmp_path / "sql"
    touch(sql / "45_volume" / "obv_1m.sql", "x", 1_000)
    clock = Clock()
    watcher = SourceWatcher([sql], tmp_path, settle_s=0.0, clock=clock)
    touch(sql / "__pycache__" / "x.py", "cache", 2_000)
    touch(sql / "notes.txt", "not a source", 2_000)
    assert watcher.changed() == []
    (sql / "45_volume" / "obv_1m.sql").unlink()
    assert watcher.changed() == []
    assert watcher.changed() == ["removed sql/45_volume/obv_1m.sql"]


def test_make_up_when_watch_then_supervisor_ticks_the_watcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make up WATCH=1` reaches `up(..., watch=True)`, and the supervisor calls its tick once a
    second while everything runs (the tick reloads on a save)."""
    from stack import components, up

    seen: list[bool] = []
    monkeypatch.setattr(up, "up", lambda ports, args, watch=False: seen.append(watch) or 0)
    monkeypatch.setenv("WATCH", "1")
    assert up.main([]) == 0
    monkeypatch.setenv("WATCH", "0")
    assert up.main([]) == 0 and up.main(["--watch"]) == 0
    assert seen == [True, False, True]

    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 2:
            raise components.StopRequested(0)

    monkeypatch.setattr(components.time, "sleep", lambda _s: None)
    # supervise() takes SIGINT/SIGTERM (and ignores them while it stops): give them back.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert components.supervise([], lambda: None, tmp_path / "up.pid", tick) == 0
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert len(ticks) == 2
