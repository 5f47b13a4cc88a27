"""The one row comparator of the tests: an output's rows against expected rows, by key,
regardless of order.

The tolerance, defined once (same_value): integers and fixed-point numbers (DECIMAL columns,
at most 6 decimals as DECIMAL(18, 6) prints them) compare exactly, so 285.0 == 285.000000 but
306.50 != 306.51; other numbers (DOUBLE columns, printed as their shortest repr) within a
relative tolerance REL_TOL (absolute ABS_TOL near zero); a DECIMAL written as text in an
expected file equals the same decimal; everything else (strings, ISO timestamps, NULL)
exactly.

`differences` lists what differs as text (the golden tests); `compare` counts duplicates,
missing, unexpected and different rows (the fault tests, where a copy of a row is a failure
of exactly-once).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REL_TOL = 1e-9
ABS_TOL = 1e-9


def load_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; numbers with a fraction as Decimal (exact, as written)."""
    return [json.loads(line, parse_float=Decimal) for line in path.read_text().splitlines() if line]


def _fixed_point(value: Any) -> bool:
    """An integer, or a number with at most 6 decimals as DECIMAL(18, 6) columns print."""
    if isinstance(value, int):
        return True
    return isinstance(value, Decimal) and int(value.as_tuple().exponent) >= -6


def same_value(expected: Any, actual: Any, rel_tol: float = REL_TOL) -> bool:
    """Integers and DECIMAL columns exactly, doubles within rel_tol, everything else equal.

    Both sides parse numbers with a fraction as Decimal; a DECIMAL(18, 6) prints at most 6
    decimals, a DOUBLE its shortest repr, so two fixed-point texts that differ are different
    decimals, while a double that differs in its last bits prints more digits."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    if isinstance(expected, str) and isinstance(actual, Decimal):
        return Decimal(expected) == actual  # a DECIMAL column, written as text in expected
    numbers = int | float | Decimal
    if isinstance(expected, numbers) and isinstance(actual, numbers):
        if expected == actual:
            return True
        if _fixed_point(expected) and _fixed_point(actual):
            return False
        return math.isclose(float(expected), float(actual), rel_tol=rel_tol, abs_tol=ABS_TOL)
    return expected == actual


def same_row(expected: dict, actual: dict, rel_tol: float = REL_TOL) -> bool:
    return set(expected) == set(actual) and all(
        same_value(expected[c], actual[c], rel_tol) for c in expected
    )


def differences(
    expected: list[dict], actual: list[dict], key: list[str], rel_tol: float = REL_TOL
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
            if not same_value(e[column], a[column], rel_tol):
                problems.append(f"{k}.{column}: expected {e[column]!r}, got {a[column]!r}")
    return problems


@dataclass
class Comparison:
    """Multiset comparison of an output's rows with the expected rows, by grain."""

    name: str
    expected: int
    actual: int
    duplicates: list[tuple] = field(default_factory=list)  # key, copies
    missing: list[tuple] = field(default_factory=list)
    unexpected: list[tuple] = field(default_factory=list)
    different: list[tuple] = field(default_factory=list)  # key, expected, actual

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected or self.different)

    def summary(self, limit: int = 5) -> str:
        lines = [
            f"{self.name}: expected {self.expected} rows, got {self.actual}: "
            f"{len(self.duplicates)} duplicated keys "
            f"({sum(c - 1 for _, c in self.duplicates)} extra rows), {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.different)} with other values"
        ]
        if self.missing:
            ends = sorted(end_ms(row) for _, row in self.missing)
            tickers = Counter(str(row.get("ticker")) for _, row in self.missing)
            lines.append(
                f"  missing rows end between {iso(ends[0])} and {iso(ends[-1])}; "
                f"per ticker {dict(tickers.most_common())}"
            )
        for label, items in (
            ("duplicate", self.duplicates),
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("different", self.different),
        ):
            lines += [f"  {label}: {item}" for item in items[:limit]]
        return "\n".join(lines)


def compare(
    name: str, expected: list[dict], actual: list[dict], grain: Sequence[str]
) -> Comparison:
    def key(row: dict) -> tuple:
        return tuple(str(row.get(c)) for c in grain)

    result = Comparison(name, len(expected), len(actual))
    exp_by: dict[tuple, list[dict]] = defaultdict(list)
    act_by: dict[tuple, list[dict]] = defaultdict(list)
    for row in expected:
        exp_by[key(row)].append(row)
    for row in actual:
        act_by[key(row)].append(row)
    assert all(len(v) == 1 for v in exp_by.values()), f"{name}: the expected rows repeat a key"
    for k, rows in act_by.items():
        if k not in exp_by:
            result.unexpected.append((k, rows[0]))
            continue
        if len(rows) > 1:
            result.duplicates.append((k, len(rows)))
        for row in rows:
            if not same_row(exp_by[k][0], row):
                result.different.append((k, exp_by[k][0], row))
                break
    result.missing = [(k, rows[0]) for k, rows in exp_by.items() if k not in act_by]
    return result


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def iso_ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def end_ms(row: dict) -> int:
    """When a result row's window (or alert) ends: window_end, end_ts or ts."""
    for column in ("window_end", "end_ts", "ts"):
        if row.get(column) is not None:
            return iso_ms(str(row[column]))
    raise KeyError(f"no end time in {row}")
