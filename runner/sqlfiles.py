"""Reading sql/: files in lexical order, their headers, and their statements with positions.

A file is a list of statements separated by `;`. Each statement keeps the line and column where
it starts, so an error Flink reports at "line 2, column 8" of a statement is shown to the user
as `sql/20_candles/candles_1m.sql:14:8`.

Header convention (the comment lines at the top of a file, `-- key: value`):

    -- candles_1m: one-minute OHLCV candles, the base of every indicator.
    -- grain: ticker, window_end
    -- topic: moex.candles_1m
    -- guarantee: exactly-once
    -- twin: at-least-once          (optional: also write moex.<name>_live at once)

A file that creates a sink table named like the file is an *output*; its header is required.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlglot.errors import TokenError
from sqlglot.tokens import Tokenizer, TokenType

GUARANTEES = ("exactly-once", "at-least-once")
HEADER_LINE = re.compile(r"^--\s*([a-z_0-9]+)\s*:\s*(.*?)\s*$")


class SqlFileError(Exception):
    """A problem in one file, located by line and column (1-based)."""

    def __init__(self, path: Path, line: int, col: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{col}: {message}")
        self.path = path
        self.line = line
        self.col = col
        self.message = message


@dataclass
class Statement:
    path: Path
    text: str
    line: int  # where the statement starts in the file, 1-based
    col: int
    kind: str  # create_table | create_view | create_function | insert | set | other
    name: str | None  # the table/view/function created, or the INSERT target
    name_span: tuple[int, int] | None = None  # offsets of the name inside text

    def locate(self, rel_line: int, rel_col: int) -> tuple[int, int]:
        """File position of a position reported relative to this statement."""
        if rel_line <= 1:
            return self.line, self.col + rel_col - 1
        return self.line + rel_line - 1, rel_col

    def renamed(self, new_name: str) -> str:
        assert self.name_span is not None
        start, end = self.name_span
        return self.text[:start] + new_name + self.text[end:]


@dataclass
class SqlFile:
    path: Path
    header: dict[str, str]
    header_line: dict[str, int]
    statements: list[Statement] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def sink(self) -> Statement | None:
        """The CREATE TABLE of the output this file produces (named like the file)."""
        for stmt in self.statements:
            if stmt.kind == "create_table" and stmt.name == self.stem:
                return stmt
        return None

    @property
    def is_output(self) -> bool:
        return self.sink is not None


def discover(sql_dir: Path) -> list[Path]:
    """All .sql files under sql_dir, folders and files in lexical order."""
    return sorted(p for p in sql_dir.rglob("*.sql") if p.is_file())


def parse_header(path: Path, text: str) -> tuple[dict[str, str], dict[str, int]]:
    header: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = HEADER_LINE.match(stripped)
        if not match:
            continue
        key, value = match.groups()
        if not header:  # the first line is `-- <name>: <description>`
            header["name"] = key
            header["description"] = value
            lines["name"] = number
            continue
        header[key] = value
        lines[key] = number
    return header, lines


def _classify(tokens: list) -> tuple[str, str | None, int]:
    """Statement kind, the object it names, and the index of that name's token."""
    words = [t.text.upper() for t in tokens[:8]]
    if not words:
        return "other", None, -1
    if words[0] == "INSERT":
        # INSERT INTO name / INSERT OVERWRITE name
        return "insert", tokens[2].text.strip("`"), 2
    if words[0] == "SET" or words[0] == "RESET":
        return "set", None, -1
    if words[0] == "CREATE":
        i = 1
        while i < len(words) and words[i] in ("TEMPORARY", "TEMP", "SYSTEM", "OR", "REPLACE"):
            i += 1
        if i < len(words) and words[i] in ("TABLE", "VIEW", "FUNCTION"):
            kind = {"TABLE": "create_table", "VIEW": "create_view", "FUNCTION": "create_function"}[
                words[i]
            ]
            j = i + 1
            if j + 2 < len(words) and words[j : j + 3] == ["IF", "NOT", "EXISTS"]:
                j += 3
            if j < len(tokens):
                return kind, tokens[j].text.strip("`"), j
    return "other", None, -1


def split_statements(path: Path, text: str) -> list[Statement]:
    """Split on top-level `;` using sqlglot's tokenizer (strings and comments are respected)."""
    try:
        tokens = Tokenizer().tokenize(text)
    except TokenError as exc:
        raise SqlFileError(path, 1, 1, f"cannot tokenize: {exc}") from exc
    # Byte offsets of each line start, to turn token (line, col) into offsets.
    line_starts = [0]
    for match in re.finditer("\n", text):
        line_starts.append(match.end())

    statements: list[Statement] = []
    current: list = []

    def flush(end_offset: int) -> None:
        if not current:
            return
        first = current[0]
        start = first.start
        # Include a leading `${...}`-free statement text exactly as written.
        body = text[start:end_offset].rstrip()
        kind, name, name_idx = _classify(current)
        span = None
        if name_idx >= 0:
            tok = current[name_idx]
            span = (tok.start - start, tok.end + 1 - start)
        line = first.line
        col = start - line_starts[line - 1] + 1
        statements.append(Statement(path, body, line, col, kind, name, span))
        current.clear()

    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            flush(token.start)
        else:
            current.append(token)
    flush(len(text))
    return statements


def load(path: Path) -> SqlFile:
    text = path.read_text()
    header, header_lines = parse_header(path, text)
    sql_file = SqlFile(path, header, header_lines, split_statements(path, text))
    return sql_file


def check_header(sql_file: SqlFile, topic_prefix: str = "moex.") -> list[SqlFileError]:
    """An output's header must name it, its grain, its topic and its guarantee, consistently."""
    if not sql_file.is_output:
        return []
    path, header, lines = sql_file.path, sql_file.header, sql_file.header_line
    errors = []
    stem = sql_file.stem
    if header.get("name") != stem:
        errors.append(
            SqlFileError(path, 1, 1, f"header must start with `-- {stem}: <what it computes>`")
        )
    for key in ("grain", "topic", "guarantee"):
        if key not in header:
            errors.append(SqlFileError(path, 1, 1, f"header lacks `-- {key}: ...`"))
    if "topic" in header and header["topic"] != f"{topic_prefix}{stem}":
        errors.append(
            SqlFileError(
                path,
                lines["topic"],
                1,
                f"topic `{header['topic']}` must be `{topic_prefix}{stem}` (file name = table = topic)",
            )
        )
    if "guarantee" in header and header["guarantee"] not in GUARANTEES:
        errors.append(
            SqlFileError(
                path, lines["guarantee"], 1, f"guarantee must be one of {', '.join(GUARANTEES)}"
            )
        )
    if "twin" in header and header["twin"] != "at-least-once":
        errors.append(SqlFileError(path, lines["twin"], 1, "twin must be `at-least-once`"))
    inserts = [s for s in sql_file.statements if s.kind == "insert" and s.name == stem]
    if len(inserts) != 1:
        errors.append(
            SqlFileError(path, sql_file.sink.line, 1, f"expected one `INSERT INTO {stem}`")
        )
    return errors


def grain_columns(sql_file: SqlFile) -> list[str]:
    return [c.strip() for c in sql_file.header.get("grain", "").split(",") if c.strip()]
