"""The outputs catalog (.run/catalog.json, read by the gateway): each output's topic, grain,
guarantee and columns with their SQL types, as Flink resolved them; and the checks that need
those columns (grain, Kafka key)."""

from __future__ import annotations

import json
from pathlib import Path

from moex.paths import ROOT
from runner.plan import Plan
from runner.settings import Settings
from runner.sqlfiles import SqlFileError, grain_columns


def table_columns(t_env, name: str) -> list[tuple[str, str]]:
    """Column names and SQL types as written in DDL (`DECIMAL(18, 6)`, `TIMESTAMP_LTZ(3)`).

    PyFlink's own DataType names say `LOCALZONEDTIMESTAMP`/`DECIMAL` without precision, which
    the gateway cannot read as instants; the Java resolved schema has the SQL spelling.
    """
    schema = t_env.from_path(name)._j_table.getResolvedSchema()
    return [(str(c.getName()), str(c.getDataType())) for c in schema.getColumns()]


def catalog(t_env, plan: Plan, settings: Settings) -> dict:
    entries = []
    for output in plan.outputs:
        columns = [{"name": n, "type": t} for n, t in table_columns(t_env, output.name)]
        header = output.file.header
        entries.append(
            {
                "name": output.name,
                "topic": f"{settings.topic_prefix}{output.name}",
                "live_topic": f"{settings.topic_prefix}{output.live_name}" if output.twin else None,
                "file": str(
                    output.file.path.relative_to(ROOT)
                    if output.file.path.is_relative_to(ROOT)
                    else output.file.path
                ),
                "description": header.get("description", ""),
                "grain": grain_columns(output.file),
                "guarantee": output.guarantee,
                "dedup_key": "event_id" if any(c["name"] == "event_id" for c in columns) else None,
                "columns": columns,
            }
        )
    return {"outputs": entries}


def check_grains(t_env, plan: Plan) -> list[SqlFileError]:
    """Every column named in a header's grain must exist in the output's DDL."""
    errors = []
    for output in plan.outputs:
        names = {n for n, _ in table_columns(t_env, output.name)}
        for column in grain_columns(output.file):
            if column not in names:
                line = output.file.header_line.get("grain", 1)
                errors.append(
                    SqlFileError(
                        output.file.path,
                        line,
                        1,
                        f"grain column `{column}` is not in table {output.name}",
                    )
                )
        if "ticker" not in names:
            errors.append(
                SqlFileError(
                    output.sink.path,
                    output.sink.line,
                    output.sink.col,
                    f"{output.name} needs a `ticker` column: it is the Kafka key",
                )
            )
    return errors


def write_catalog(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
