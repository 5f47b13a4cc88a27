"""A replay's progress while its job runs: a line every few seconds (records read per input from
the source operators' counters in the MiniCluster's REST API, rows written per output from its
part files, the trade rate and the time left), and the checkpoints that close a bounded job.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runner.flink_rest import rest as rest_get

# A source operator's record counter, per subtask: "0.Source__trades_raw[1].numRecordsOut"
SOURCE_COUNTER = re.compile(r"^\d+\.Source__(?P<table>\w+)_raw\[\d+\]\.numRecordsOut$")
PROGRESS_EVERY_S = 5.0


class LineCounter:
    """Lines written so far under a sink's folder, reading only what was appended since the last
    count (in-progress part files grow; a committed one is renamed once, then counted anew)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[Path, tuple[int, int]] = {}  # path -> (bytes read, newlines in them)

    def count(self) -> int:
        if not self.folder.exists():
            return 0
        current: dict[Path, tuple[int, int]] = {}
        try:
            parts = list(self.folder.rglob("*"))
        except OSError:  # a bucket folder went away while it was listed: the previous count
            return sum(lines for _, lines in self.seen.values())
        for part in parts:
            try:
                if not part.is_file():
                    continue
                offset, lines = self.seen.get(part, (0, 0))
                with open(part, "rb") as stream:
                    stream.seek(offset)
                    chunk = stream.read()
                current[part] = (offset + len(chunk), lines + chunk.count(b"\n"))
            except OSError:
                continue  # renamed or removed between listing and reading: counted next time
        self.seen = current
        return sum(lines for _, lines in current.values())


class JobWatcher:
    """A daemon thread calling `tick` every `every_s` while the replay's job runs."""

    def __init__(self, rest_port: int, job_id: Callable[[], str | None], every_s: float) -> None:
        self.rest_port = rest_port
        self.job_id = job_id
        self.every_s = every_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def start(self) -> JobWatcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.ident is not None:
            self.thread.join(10)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        due = time.monotonic() + self.every_s
        while not self.stopped.wait(max(0.0, due - time.monotonic())):
            due += self.every_s  # a fixed cadence, however long the REST calls take
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - a watcher must outlive one bad tick
                print(f"runner: {type(self).__name__}: {exc!r}", file=sys.stderr, flush=True)


class Progress(JobWatcher):
    """Prints a progress line every `every_s` while the replay's job runs."""

    def __init__(
        self,
        rest_port: int,
        job_id: Callable[[], str | None],
        totals: dict[str, int],
        parts_dir: Path,
        outputs: list[str],
        every_s: float = PROGRESS_EVERY_S,
        write: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(rest_port, job_id, every_s)
        self.totals = totals
        self.counters = {name: LineCounter(parts_dir / name) for name in outputs}
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started = time.monotonic()
        self.last = (0.0, 0)  # (seconds, trades read) at the previous line

    def records_read(self) -> dict[str, int]:
        """Records each source has emitted so far, or {} before the job reports metrics."""
        job_id = self.job_id()
        if job_id is None:
            return {}
        read: dict[str, int] = {}
        for vertex in rest_get(self.rest_port, f"/jobs/{job_id}", timeout=5).get("vertices", []):
            if not vertex.get("name", "").startswith("Source: "):
                continue
            base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
            names = [m["id"] for m in rest_get(self.rest_port, base, timeout=5)]
            wanted = [n for n in names if SOURCE_COUNTER.match(n)]
            if not wanted:
                continue
            for metric in rest_get(self.rest_port, f"{base}?get={','.join(wanted)}", timeout=5):
                table = SOURCE_COUNTER.match(metric["id"])["table"]
                read[table] = read.get(table, 0) + int(float(metric["value"]))
        return read

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        try:
            read = self.records_read()
        except Exception:  # noqa: BLE001 - the MiniCluster is starting or finishing
            read = {}
        trades, total = read.get("trades"), self.totals.get("trades", 0)
        pace = "rate and ETA once the sources report"
        if trades:
            # The rate since the previous line: the job's start does not drag the ETA.
            since, before = self.last
            recent = (trades - before) / (elapsed - since) if trades > before else 0.0
            rate = recent or trades / elapsed
            pace = f"{rate:,.0f} trades/s, ETA {(total - trades) / rate:.0f} s"
            if trades > before:  # REST metrics refresh less often than lines are printed
                self.last = (elapsed, trades)
        return self._format(elapsed, read, pace)

    def _format(self, elapsed: float, read: dict[str, int], pace: str) -> str:
        inputs = ", ".join(
            f"{name} {read[name]:,}/{total:,}" if name in read else f"{name} ?/{total:,}"
            for name, total in self.totals.items()
        )
        written = ", ".join(f"{name} {c.count():,}" for name, c in self.counters.items())
        return f"runner: {elapsed:.0f} s: read {inputs}; written {written}; {pace}"

    def tick(self) -> None:
        self.write(self.line())

    def finished(self) -> None:
        """The closing line once the job has ended well: every source read its file to the end
        (records it could not parse included; they are counted in input_rejects) and the sinks
        committed their part files. A short replay can end before the first periodic line.
        Called after stop()."""
        elapsed = time.monotonic() - self.started
        rate = self.totals.get("trades", 0) / elapsed if elapsed > 0 else 0.0
        self.write(self._format(elapsed, self.totals, f"{rate:,.0f} trades/s, job finished"))


class FinalCheckpoints(JobWatcher):
    """Asks for a checkpoint every second once every source has read its file to the end.

    The filesystem sink commits its files only on checkpoints, and a bounded streaming job ends
    only after a checkpoint taken when its tasks are done. Periodic checkpoints while the files
    are read only cost time (each one snapshots every window, OVER and MATCH_RECOGNIZE state),
    so replay checkpoints rarely and triggers the closing ones itself (POST
    /jobs/<id>/checkpoints) as soon as the inputs are consumed.
    """

    def __init__(self, rest_port: int, job_id: Callable[[], str | None]) -> None:
        super().__init__(rest_port, job_id, every_s=1.0)

    def sources_finished(self, job_id: str) -> bool:
        vertices = rest_get(self.rest_port, f"/jobs/{job_id}", timeout=5).get("vertices", [])
        sources = [v for v in vertices if v.get("name", "").startswith("Source: ")]
        return bool(sources) and all(v.get("status") == "FINISHED" for v in sources)

    def tick(self) -> None:
        try:
            job_id = self.job_id()
            if job_id is not None and self.sources_finished(job_id):
                rest_get(self.rest_port, f"/jobs/{job_id}/checkpoints", body={}, timeout=5)
        except Exception:  # noqa: BLE001 - not running yet, one in progress, or job over
            pass
