"""What every benchmark needs: temp folders, child processes, a broker, /proc sampling, Flink's
REST API, consumer lag, percentiles and the machine's facts."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moex.paths import CACHE, ROOT
from stack.kafka import KafkaBroker, free_port
from stack.topics import create_topics

PY = sys.executable
TICKERS = ["SBER", "GAZP", "VTBR", "LKOH", "YDEX", "GMKN", "ROSN", "NVTK", "TATN", "MGNT"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
STARTED = time.monotonic()

logging.getLogger("kafka").setLevel(logging.CRITICAL)


def say(message: str) -> None:
    """Progress on stderr, with the time since the run started (stdout keeps the table)."""
    print(f"[{time.monotonic() - STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


# --- temp folders and child processes -------------------------------------------------------


@contextmanager
def workspace(name: str, keep: bool = False) -> Iterator[Path]:
    """A temp folder for one benchmark (broker data, logs, checkpoints), deleted afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"moex-bench-{name}-"))
    try:
        yield path
    finally:
        if keep:
            say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def child_env(work: Path, **extra: str) -> dict[str, str]:
    """Environment of the project's components: their .run/ files go to the temp folder."""
    env = {
        **os.environ,
        "MOEX_RUN_DIR": str(work / "run"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(
            dict.fromkeys([str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))])
        ),
    }
    env.update(extra)
    return env


class Proc:
    """A child in its own process group (so stopping it stops the JVMs and workers it started)."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.started_wall = time.time()
        self.started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        RUNNING.add(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
        """Signal the group, then SIGKILL whatever is left of it after timeout_s."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.popen.poll()
            if not _group_alive(self.pid):
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait()
        RUNNING.discard(self)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


RUNNING: set[Proc] = set()


def stop_all() -> None:
    """Stop every child still running (on Ctrl-C or a failed benchmark)."""
    for proc in list(RUNNING):
        proc.stop(timeout_s=10)


def wait_for(condition, timeout_s: float, what: str, proc: Proc | None = None, every: float = 0.3):
    """Poll `condition()` until truthy; fail with the child's log tail if it died meanwhile."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_error = exc
        time.sleep(every)
    detail = f" (last error: {last_error})" if last_error else ""
    tail = f"\n{proc.tail()}" if proc is not None else ""
    raise TimeoutError(f"{what} not within {timeout_s:.0f} s{detail}{tail}")


# --- the broker -----------------------------------------------------------------------------


@contextmanager
def kafka_broker(work: Path, heap_mb: int = 512) -> Iterator[KafkaBroker]:
    """A fresh single-node Kafka 4 on free ports with every topic of topics.toml."""
    broker = KafkaBroker(work / "kafka", free_port(), free_port(), heap_mb=heap_mb)
    broker.start()
    try:
        create_topics(broker.bootstrap)
        yield broker
    finally:
        broker.stop()


def create_extra_topics(bootstrap: str, names: Iterable[str], partitions: int = 3) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="moex-bench")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            admin.create_topics(new)
    finally:
        admin.close()


class LagProbe:
    """Consumer lag of a group on a topic: end offsets minus the group's committed offsets.

    Flink commits its source offsets when a checkpoint completes, so the lag seen here moves in
    steps of one checkpoint interval's input."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import KafkaAdminClient

        self.group = group
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="moex-bench-lag")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        partitions = self.consumer.partitions_for_topic(topic) or set()
        self.tps = [TopicPartition(topic, p) for p in sorted(partitions)]

    def sample(self) -> tuple[int, int]:
        """(lag, end offsets summed)."""
        ends = self.consumer.end_offsets(self.tps)
        committed = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
        end_total = sum(ends.values())
        done = sum(max(committed[tp].offset, 0) for tp in self.tps if tp in committed)
        return end_total - done, end_total

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


# --- /proc sampling -------------------------------------------------------------------------


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    cpu_ticks: int
    rss_kb: int


def processes() -> dict[int, ProcInfo]:
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is state (stat field 3): utime/stime are fields 14/15, rss field 24
        table[int(entry.name)] = ProcInfo(
            pid=int(entry.name),
            ppid=int(fields[1]),
            comm=comm,
            cpu_ticks=int(fields[11]) + int(fields[12]),
            rss_kb=int(fields[21]) * PAGE_KB,
        )
    return table


def descendants(root: int, table: dict[int, ProcInfo]) -> list[ProcInfo]:
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


def tree_usage(root: int, table: dict[int, ProcInfo] | None = None) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process and all its descendants."""
    tree = descendants(root, table or processes())
    return sum(p.rss_kb for p in tree) / 1024, sum(p.cpu_ticks for p in tree) / CLOCK_TICKS


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

    def _usage(self) -> dict[str, tuple[float, float]]:
        table = processes()
        usage = {}
        for name, root in list(self.roots.items()):
            tree = descendants(root, table)
            if not tree:
                continue
            if name == self.split:
                jvms = [p for p in tree if p.comm == "java"]
                workers = []
                for jvm in jvms:
                    workers += [
                        p for p in descendants(jvm.pid, table) if p.comm.startswith("python")
                    ]
                worker_pids = {p.pid for p in workers}
                jvm_tree = [
                    p
                    for jvm in jvms
                    for p in descendants(jvm.pid, table)
                    if p.pid not in worker_pids
                ]
                jvm_pids = {p.pid for p in jvm_tree}
                client = [p for p in tree if p.pid not in jvm_pids and p.pid not in worker_pids]
                # A local MiniCluster runs the Python UDF worker in "loopback mode", inside the
                # runner's own process; workers started as JVM children are counted apart.
                parts = {
                    f"{name} JVM": jvm_tree,
                    f"{name} Python (runner + UDF worker)": client,
                }
                if workers:
                    parts[f"{name} Python worker processes"] = workers
            else:
                parts = {name: tree}
            for part, members in parts.items():
                usage[part] = (
                    sum(p.rss_kb for p in members) / 1024,
                    sum(p.cpu_ticks for p in members) / CLOCK_TICKS,
                )
        return usage

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> dict[str, tuple[float, float]]:
        now = time.monotonic()
        usage = self._usage()
        for part, (rss, cpu) in usage.items():
            self.peak_rss[part] = max(self.peak_rss.get(part, 0.0), rss)
            self.cpu_first.setdefault(part, (now, cpu))
            self.cpu_last[part] = (now, cpu)
        return usage

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


# --- Flink's REST API -----------------------------------------------------------------------


def rest_get(port: int, path: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return json.load(response)


def listening_ports(pid: int) -> list[int]:
    """TCP ports a process listens on (the replay's MiniCluster picks a random REST port)."""
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # 0A = LISTEN
                ports.append(int(parts[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def find_rest_port(root_pid: int) -> int | None:
    for info in descendants(root_pid, processes()):
        if info.comm != "java":
            continue
        for port in listening_ports(info.pid):
            try:
                rest_get(port, "/jobs/overview", timeout=1)
                return port
            except Exception:
                continue
    return None


def running_job(port: int) -> dict | None:
    jobs = rest_get(port, "/jobs/overview")["jobs"]
    for job in jobs:
        if job["state"] == "RUNNING" and job["tasks"]["running"] == job["tasks"]["total"]:
            return job
    return None


def short_vertex(name: str, width: int = 90) -> str:
    """A vertex is a chain of operators: keep their kinds, and the number of the first one
    that is not a source or a Calc (several vertices do a `Match` or a window aggregate)."""
    parts = []
    numbered = name.startswith("Source:")
    for op in name.replace("<br/>", " ").split(" -> "):
        op = op.strip().lstrip("(")
        head = op.split("(")[0].strip()
        kind = head.split("[")[0].strip()
        if not numbered and kind not in ("Calc", "StreamRecordTimestampInserter") and "[" in head:
            parts.append(head if not op.startswith("Source:") else op.split("[")[0])
            numbered = not op.startswith("Source:")
        else:
            parts.append(kind)
    text = " -> ".join(dict.fromkeys(p for p in parts if p))
    return text if len(text) <= width else text[: width - 1] + "…"


VERTEX_METRICS = (
    "busyTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "idleTimeMsPerSecond",
)


def vertex_load(port: int, job_id: str) -> list[dict]:
    """Per vertex: busy / back-pressured / idle ms per second (max over subtasks), records."""
    job = rest_get(port, f"/jobs/{job_id}")
    try:  # operator descriptions (window sizes, MATCH patterns) tell same-named vertices apart
        plan = rest_get(port, f"/jobs/{job_id}/plan")["plan"]["nodes"]
        descriptions = {n["id"]: n.get("description", "") for n in plan}
    except Exception:
        descriptions = {}
    out = []
    for vertex in job.get("vertices", []):
        metrics = {}
        try:
            values = rest_get(
                port,
                f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
                f"?get={','.join(VERTEX_METRICS)}&agg=max",
            )
            metrics = {m["id"]: m.get("max") for m in values}
        except Exception:
            pass
        out.append(
            {
                "id": vertex["id"],
                "vertex": short_vertex(vertex["name"]),
                "full_name": (descriptions.get(vertex["id"]) or vertex["name"])[:1500],
                "busy_ms_per_s": _num(metrics.get("busyTimeMsPerSecond")),
                "backpressured_ms_per_s": _num(metrics.get("backPressuredTimeMsPerSecond")),
                "idle_ms_per_s": _num(metrics.get("idleTimeMsPerSecond")),
                "records_in": vertex.get("metrics", {}).get("read-records"),
                "records_out": vertex.get("metrics", {}).get("write-records"),
                "duration_ms": vertex.get("duration"),
            }
        )
    return out


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN (a vertex without the metric)


class VertexProfiler:
    """Accumulates busy / back-pressured time per vertex from periodic REST samples.

    Each sample's per-second rates count for the time since the previous sample. On a machine
    with fewer cores than busy threads, "busy" includes time a task was runnable but waiting for
    a core: the ranking shows the critical path, not CPU shares."""

    def __init__(self, first_interval_s: float = 1.0) -> None:
        self.busy: dict[str, float] = {}
        self.backpressured: dict[str, float] = {}
        self.names: dict[str, str] = {}
        self.short: dict[str, str] = {}
        self.samples = 0
        self.elapsed_s = 0.0
        self.last: list[dict] = []
        self._last_at: float | None = None
        self._first_interval_s = first_interval_s

    def add(self, loads: list[dict]) -> None:
        now = time.monotonic()
        interval = self._first_interval_s if self._last_at is None else now - self._last_at
        self._last_at = now
        self.samples += 1
        self.elapsed_s += interval
        self.last = loads
        for v in loads:
            name = v.get("id", v["vertex"])
            self.names[name] = v.get("full_name", name)
            self.short[name] = v["vertex"]
            self.busy[name] = self.busy.get(name, 0.0) + (v["busy_ms_per_s"] or 0) * interval
            self.backpressured[name] = (
                self.backpressured.get(name, 0.0) + (v["backpressured_ms_per_s"] or 0) * interval
            )

    def top(self, count: int = 6) -> list[dict]:
        total = sum(self.busy.values()) or 1.0
        elapsed_ms = max(self.elapsed_s * 1000, 1.0)
        ranked = sorted(self.busy.items(), key=lambda kv: -kv[1])[:count]
        return [
            {
                "vertex": self.short.get(name, name),
                "busy_pct_of_time": round(100 * ms / elapsed_ms, 1),
                "backpressured_pct_of_time": round(
                    100 * self.backpressured.get(name, 0.0) / elapsed_ms, 1
                ),
                "share_of_busy_pct": round(100 * ms / total, 1),
                "operators": self.names.get(name, name)[:600],
            }
            for name, ms in ranked
        ]


# --- numbers --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(values_ms: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values_ms),
        "p50_ms": _round(percentile(values_ms, 50)),
        "p95_ms": _round(percentile(values_ms, 95)),
        "p99_ms": _round(percentile(values_ms, 99)),
        "max_ms": _round(max(values_ms)) if values_ms else None,
    }


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# --- the machine ----------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except Exception as exc:
            return f"unknown ({exc})"

    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "java": first_line(["java", "-version"]),
        "hostname_hash": hash(socket.gethostname()) & 0xFFFF,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the separate venv for Quix Streams and the fast load generator -------------------------

BENCH_VENV = CACHE / "bench-venv"
QUIX_PIN = "quixstreams==3.28.1"


def bench_python(create: bool = True) -> Path | None:
    """Python of .cache/bench-venv (Quix Streams + confluent-kafka), created with pip on first use.

    Kept apart from .venv: quixstreams pins its own confluent-kafka and rocksdict."""
    python = BENCH_VENV / "bin" / "python"
    marker = BENCH_VENV / f".installed-{QUIX_PIN}"
    if marker.exists():
        return python
    if python.exists():  # made by hand or by an interrupted run: reuse it when complete
        check = subprocess.run(
            [
                str(python),
                "-c",
                "import quixstreams, confluent_kafka; print(quixstreams.__version__)",
            ],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0 and check.stdout.strip() == QUIX_PIN.split("==")[1]:
            marker.write_text(QUIX_PIN + "\n")
            return python
    if not create:
        return None
    say(f"creating {BENCH_VENV} with {QUIX_PIN} (pip, once)")
    try:
        subprocess.run([PY, "-m", "venv", "--clear", str(BENCH_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", QUIX_PIN],
            check=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        say(f"bench venv not available: {exc}")
        return None
    marker.write_text(QUIX_PIN + "\n")
    return python


@dataclass
class Result:
    """One benchmark's outcome: headline rows for the table, plus everything measured."""

    name: str
    rows: list[dict] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def row(
        self,
        metric: str,
        value: float | str | None,
        unit: str = "",
        target: str = "",
        met: bool | None = None,
        runs: list | None = None,
    ) -> None:
        self.rows.append(
            {
                "metric": metric,
                "value": value,
                "unit": unit,
                "target": target,
                "met": met,
                "runs": runs,
            }
        )
