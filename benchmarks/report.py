"""What a benchmark reports: percentiles, medians, the machine it ran on, and its Result."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

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
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "java": first_line(["java", "-version"]),
        "hostname_hash": hash(socket.gethostname()) & 0xFFFF,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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
