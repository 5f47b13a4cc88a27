"""Resident memory and CPU time of process trees, sampled while a benchmark runs (psutil)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

from runner.flink_rest import rest
from stack.proc import listening_ports


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    cpu_s: float  # user + system, this process only
    rss_mb: float


def processes() -> dict[int, ProcInfo]:
    """Every process of the machine, read once."""
    table = {}
    for p in psutil.process_iter(["ppid", "name", "cpu_times", "memory_info"]):
        info = p.info
        if info["cpu_times"] is None or info["memory_info"] is None:
            continue  # exited, or not ours to read
        table[p.pid] = ProcInfo(
            pid=p.pid,
            ppid=info["ppid"],
            comm=info["name"] or "",
            cpu_s=info["cpu_times"].user + info["cpu_times"].system,
            rss_mb=info["memory_info"].rss / (1024 * 1024),
        )
    return table


def snapshot_tree(root: int, table: dict[int, ProcInfo]) -> list[ProcInfo]:
    """`root` and every process below it, from one snapshot (a sample adds up one instant)."""
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(table[pid])
        todo.extend(children.get(pid, []))
    return out


def usage(members: list[ProcInfo]) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) summed."""
    return sum(p.rss_mb for p in members), sum(p.cpu_s for p in members)


def tree_usage(root: int, table: dict[int, ProcInfo] | None = None) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process and all its descendants."""
    return usage(snapshot_tree(root, table or processes()))


def find_rest_port(root_pid: int) -> int | None:
    """The REST port of the MiniCluster a process tree runs (a replay picks a random one)."""
    for info in snapshot_tree(root_pid, processes()):
        if info.comm != "java":
            continue
        for port in listening_ports(info.pid):
            try:
                rest(port, "/jobs/overview", timeout=1)
                return port
            except Exception:
                continue
    return None


class Sampler:
    """Samples RSS and CPU of named process trees every `every_s` in a thread; keeps peaks.

    `split` names a tree (the runner's) whose JVM is counted apart from its Python side."""

    def __init__(self, roots: dict[str, int], every_s: float = 1.0, split: str | None = None):
        self.roots = dict(roots)
        self.every_s = every_s
        self.split = split
        self.peak_rss: dict[str, float] = {}
        self.cpu_first: dict[str, tuple[float, float]] = {}
        self.cpu_last: dict[str, tuple[float, float]] = {}
        self.marks: dict[str, dict[str, tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def add(self, name: str, pid: int) -> None:
        self.roots[name] = pid

    def _parts(self, name: str, tree: list[ProcInfo], table: dict) -> dict[str, list[ProcInfo]]:
        if name != self.split:
            return {name: tree}
        jvms = [p for p in tree if p.comm == "java"]
        workers = [
            p for jvm in jvms for p in snapshot_tree(jvm.pid, table) if p.comm.startswith("python")
        ]
        worker_pids = {p.pid for p in workers}
        jvm_tree = [
            p for jvm in jvms for p in snapshot_tree(jvm.pid, table) if p.pid not in worker_pids
        ]
        jvm_pids = {p.pid for p in jvm_tree}
        client = [p for p in tree if p.pid not in jvm_pids and p.pid not in worker_pids]
        # A local MiniCluster runs the Python UDF worker in "loopback mode", inside the
        # runner's own process; workers started as JVM children are counted apart.
        parts = {f"{name} JVM": jvm_tree, f"{name} Python (runner + UDF worker)": client}
        if workers:
            parts[f"{name} Python worker processes"] = workers
        return parts

    def _usage(self) -> dict[str, tuple[float, float]]:
        table = processes()
        out = {}
        for name, root in list(self.roots.items()):
            tree = snapshot_tree(root, table)
            if tree:
                for part, members in self._parts(name, tree, table).items():
                    out[part] = usage(members)
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> dict[str, tuple[float, float]]:
        now = time.monotonic()
        current = self._usage()
        for part, (rss, cpu) in current.items():
            self.peak_rss[part] = max(self.peak_rss.get(part, 0.0), rss)
            self.cpu_first.setdefault(part, (now, cpu))
            self.cpu_last[part] = (now, cpu)
        return current

    def mark(self, label: str) -> None:
        """Remember CPU counters now; `cpu_between(a, b)` gives cores used between two marks."""
        now = time.monotonic()
        self.marks[label] = {part: (now, cpu) for part, (_, cpu) in self.sample().items()}

    def cpu_between(self, start: str, end: str) -> dict[str, float]:
        a, b = self.marks.get(start, {}), self.marks.get(end, {})
        out = {}
        for part in b:
            if part in a and b[part][0] > a[part][0]:
                out[part] = (b[part][1] - a[part][1]) / (b[part][0] - a[part][0])
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of each part between its first and its last sample."""
        return {
            part: round(self.cpu_last[part][1] - self.cpu_first[part][1], 1)
            for part in self.cpu_last
        }

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
