"""Where a Flink job spends its time: per-vertex busy / back-pressured / idle rates from the
REST API (runner/flink_rest.py), accumulated over a benchmark."""

from __future__ import annotations

import time
from typing import Any

from runner.flink_rest import rest


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
    job = rest(port, f"/jobs/{job_id}")
    try:  # operator descriptions (window sizes, MATCH patterns) tell same-named vertices apart
        plan = rest(port, f"/jobs/{job_id}/plan")["plan"]["nodes"]
        descriptions = {n["id"]: n.get("description", "") for n in plan}
    except Exception:
        descriptions = {}
    out = []
    for vertex in job.get("vertices", []):
        metrics = {}
        try:
            values = rest(
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
