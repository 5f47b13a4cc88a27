"""Turning Flink's Java exceptions into `file:line:col: message` lines a user can act on."""

from __future__ import annotations

import re

from runner.sqlfiles import SqlFileError, Statement

# Calcite/Flink positions: "line 3, column 14" or "From line 2, column 8 to line 2, column 20".
POSITION = re.compile(r"line (\d+), column (\d+)")
NOISE = ("\tat ", "at org.", "at java.", "at sun.", "at py4j", "... ")


def java_message(exc: BaseException) -> str:
    """The useful lines of a Py4J/Table exception: the causes, not the stack frames."""
    text = str(exc)
    useful = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(NOISE) or stripped.startswith("at "):
            continue
        if stripped.startswith("py4j.protocol.Py4JJavaError") or stripped.startswith(
            "An error occurred while calling"
        ):
            continue
        stripped = re.sub(r"^(: )?(Caused by: )?[a-z]+(\.[a-zA-Z_$0-9]+)+: ", "", stripped)
        if stripped and stripped not in useful:
            useful.append(stripped)
    return " | ".join(useful[:4]) if useful else text.strip()[:500]


def locate(stmt: Statement, exc: BaseException) -> SqlFileError:
    message = java_message(exc)
    match = POSITION.search(message)
    if match:
        line, col = stmt.locate(int(match.group(1)), int(match.group(2)))
    else:
        line, col = stmt.line, stmt.col
    return SqlFileError(stmt.path, line, col, message)
