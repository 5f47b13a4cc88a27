"""Turning Flink's Java exceptions into `file:line:col: message` lines a user can act on."""

from __future__ import annotations

import re

from runner.sqlfiles import SqlFileError, Statement

# Calcite/Flink positions: "line 3, column 14" or "From line 2, column 8 to line 2, column 20".
POSITION = re.compile(r"line (\d+), column (\d+)")
RANGE_PREFIX = re.compile(r"^(From )?line \d+, column \d+( to line \d+, column \d+)?: ")
JAVA_CLASS_PREFIX = re.compile(r"^(: )?(Caused by: )?[a-z]+(\.[a-zA-Z_$0-9]+)+(: )?")
NOISE = ("\tat ", "at org.", "at java.", "at sun.", "at py4j", "... ")


def java_message(exc: BaseException) -> str:
    """The useful lines of a Py4J/Table exception: the innermost causes, no stack frames."""
    text = str(exc)
    useful: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(NOISE) or stripped.startswith("at "):
            continue
        if stripped.startswith("py4j.protocol.Py4JJavaError") or stripped.startswith(
            "An error occurred while calling"
        ):
            continue
        stripped = JAVA_CLASS_PREFIX.sub("", stripped)
        while stripped.startswith("SQL validation failed. "):
            stripped = stripped[len("SQL validation failed. ") :]
        stripped = RANGE_PREFIX.sub("", stripped).strip()
        if stripped and stripped not in useful:
            useful.append(stripped)
    # A wrapper repeats its cause: keep only lines that contain no other kept line.
    specific = [
        line for line in useful if not any(other != line and other in line for other in useful)
    ]
    return " | ".join(specific[:3]) if specific else text.strip()[:500]


def locate(stmt: Statement, exc: BaseException) -> SqlFileError:
    """The error at its place in the file (Flink reports positions inside the statement)."""
    message = java_message(exc)
    match = POSITION.search(str(exc))
    if match:
        line, col = stmt.locate(int(match.group(1)), int(match.group(2)))
    else:
        line, col = stmt.line, stmt.col
    return SqlFileError(stmt.path, line, col, message)
