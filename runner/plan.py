"""The job's plan, read from sql/: its files, DDL in file order, its outputs; and its build into a
TableEnvironment (every DDL statement executed, every INSERT in one statement set).

Placeholders the runner fills in are listed in runner/connectors.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from runner.connectors import Connectors, substitute
from runner.errors import locate
from runner.settings import Settings
from runner.sqlfiles import SqlFile, SqlFileError, Statement, check_header, discover, load


@dataclass
class Output:
    """One result stream: a sink table, its file and header, and its topic(s)."""

    name: str
    file: SqlFile
    sink: Statement
    insert: Statement
    guarantee: str
    twin: bool

    @property
    def live_name(self) -> str | None:
        return f"{self.name}_live" if self.twin else None


@dataclass
class Plan:
    files: list[SqlFile]
    ddl: list[Statement]
    outputs: list[Output]
    functions: list[Statement] = field(default_factory=list)


def load_plan(settings: Settings) -> Plan:
    """Read and structurally check every file; raise one error listing every problem."""
    errors: list[SqlFileError] = []
    files = []
    for path in discover(settings.sql_dir):
        try:
            files.append(load(path))
        except SqlFileError as exc:
            errors.append(exc)
    ddl: list[Statement] = []
    outputs: list[Output] = []
    for sql_file in files:
        errors.extend(check_header(sql_file))
        inserts = [s for s in sql_file.statements if s.kind == "insert"]
        for stmt in sql_file.statements:
            if stmt.kind == "insert":
                continue
            if stmt.kind == "other":
                errors.append(
                    SqlFileError(
                        stmt.path,
                        stmt.line,
                        stmt.col,
                        "only CREATE TABLE/VIEW/FUNCTION, SET and INSERT INTO are allowed",
                    )
                )
            ddl.append(stmt)
        for stmt in inserts:
            if stmt.name != sql_file.stem:
                errors.append(
                    SqlFileError(
                        stmt.path,
                        stmt.line,
                        stmt.col,
                        f"a file writes only its own output: INSERT INTO {sql_file.stem}",
                    )
                )
        if sql_file.is_output and inserts and not errors_for(errors, sql_file.path):
            outputs.append(
                Output(
                    name=sql_file.stem,
                    file=sql_file,
                    sink=sql_file.sink,
                    insert=inserts[0],
                    guarantee=sql_file.header["guarantee"],
                    twin=sql_file.header.get("twin") == "at-least-once",
                )
            )
    names = [o.name for o in outputs]
    if settings.only:
        unknown = sorted(set(settings.only) - set(names))
        if unknown:
            errors.append(
                SqlFileError(settings.sql_dir, 1, 1, f"--only names unknown outputs: {unknown}")
            )
        outputs = [o for o in outputs if o.name in settings.only]
    if errors:
        raise PlanError(errors)
    return Plan(files, ddl, outputs)


def errors_for(errors: list[SqlFileError], path: Path) -> bool:
    return any(e.path == path for e in errors)


class PlanError(Exception):
    def __init__(self, errors: list[SqlFileError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def sink_names(plan: Plan) -> list[str]:
    """Every sink table of the plan: each output and its `_live` twin."""
    return [name for o in plan.outputs for name in (o.name, o.live_name) if name]


def build(
    t_env,
    plan: Plan,
    connectors: Connectors,
    settings: Settings,
    on_error: Callable[[SqlFileError], None] | None = None,
    twins: bool = True,
):
    """Execute every DDL statement and gather the INSERTs of the selected outputs.

    Returns the statement set. Errors are located in their files; with on_error they are
    collected (to report them all), otherwise the first is raised.
    """
    errors: list[SqlFileError] = []

    def fail(err: SqlFileError) -> None:
        if on_error is None:
            raise err
        errors.append(err)
        on_error(err)

    selected = {o.name: o for o in plan.outputs}
    for stmt in plan.ddl:
        is_sink = stmt.kind == "create_table" and stmt.name == stmt.path.stem
        output = selected.get(stmt.name) if is_sink else None
        if is_sink and output is None:
            continue  # an output left out with --only: its sink is not needed
        try:
            if output is None:
                t_env.execute_sql(substitute(stmt, connectors, settings, None, None))
                continue
            t_env.execute_sql(substitute(stmt, connectors, settings, output.name, output.guarantee))
            if output.twin and twins:
                twin = replace(stmt, text=stmt.renamed(output.live_name), name=output.live_name)
                t_env.execute_sql(
                    substitute(twin, connectors, settings, output.live_name, "at-least-once")
                )
        except SqlFileError as err:
            fail(err)
        except Exception as exc:  # Py4JJavaError, TableException, ...
            fail(locate(stmt, exc))
    statement_set = t_env.create_statement_set()
    for output in plan.outputs:
        texts = [output.insert.text]
        if output.twin and twins:
            texts.append(output.insert.renamed(output.live_name))
        for text in texts:
            try:
                statement_set.add_insert_sql(text)
            except Exception as exc:
                fail(locate(output.insert, exc))
    if errors:
        raise PlanError(errors)
    return statement_set


def explain_each(t_env, plan: Plan) -> list[SqlFileError]:
    """Let Flink's planner validate each INSERT on its own (reports every bad output)."""
    errors = []
    for output in plan.outputs:
        try:
            t_env.explain_sql(output.insert.text)
        except Exception as exc:
            errors.append(locate(output.insert, exc))
    return errors
