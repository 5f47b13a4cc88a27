"""Comparing an output's rows with expected rows: by key, regardless of order.

Decimals are compared exactly (285.0 == 285.000000), doubles within a relative tolerance,
everything else (strings, ISO timestamps, integers, NULL) exactly.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line, parse_float=Decimal) for line in path.read_text().splitlines() if line]


def _same(expected, actual, rel_tol: float) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, str) and isinstance(actual, Decimal):
        return Decimal(expected) == actual  # a DECIMAL column, written as text in expected
    if isinstance(expected, int | float | Decimal) and isinstance(actual, int | float | Decimal):
        if isinstance(expected, int) and isinstance(actual, int):
            return expected == actual
        return math.isclose(float(expected), float(actual), rel_tol=rel_tol, abs_tol=1e-9)
    return expected == actual


def differences(
    expected: list[dict], actual: list[dict], key: list[str], rel_tol: float = 1e-9
) -> list[str]:
    """Human-readable differences; empty when the rows match."""

    def index(rows: list[dict], side: str) -> dict[tuple, dict]:
        out = {}
        for row in rows:
            k = tuple(str(row.get(c)) for c in key)
            if k in out:
                problems.append(f"{side}: duplicate key {k}")
            out[k] = row
        return out

    problems: list[str] = []
    exp, act = index(expected, "expected"), index(actual, "actual")
    for k in sorted(exp.keys() - act.keys()):
        problems.append(f"missing {k}: {exp[k]}")
    for k in sorted(act.keys() - exp.keys()):
        problems.append(f"unexpected {k}: {act[k]}")
    for k in sorted(exp.keys() & act.keys()):
        e, a = exp[k], act[k]
        if set(e) != set(a):
            problems.append(f"{k}: columns {sorted(e)} != {sorted(a)}")
            continue
        for column in e:
            if not _same(e[column], a[column], rel_tol):
                problems.append(f"{k}.{column}: expected {e[column]!r}, got {a[column]!r}")
    return problems
