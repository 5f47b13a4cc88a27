"""Building the Flink job from sql/: DDL in file order, every INSERT in one statement set.

Placeholders the runner fills in (always on one line, so error positions stay true):
    ${SOURCE:trades}   connector options of an input (Kafka topic, or a file in replay)
    ${POSITION:trades} columns kafka_partition and kafka_offset of an input's records (Kafka
                       metadata; NULL in replay, whose inputs are files)
    ${SINK}            connector options of the file's output (Kafka with its guarantee, or files)
    ${WATERMARK_DELAY} / ${KAFKA_BOOTSTRAP} / ${TOPIC_PREFIX}
    ${STRATEGY_COLUMNS} / ${STRATEGY_PNL:view}
                       a strategy's sink columns and the SELECT of its fills, position, cash,
                       equity and drawdown from its signal view (runner/backtest_sql.py)
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from runner import backtest_sql
from runner.errors import java_message, locate
from runner.settings import Settings
from runner.sqlfiles import SqlFile, SqlFileError, Statement, check_header, discover, load
from stack.paths import ROOT, RUN, connector_jar

PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)(?::([a-z_0-9]+))?\}")
INPUTS = ("trades", "orderbook", "market_status")


def _options(opts: dict[str, str]) -> str:
    return ", ".join(f"'{k}' = '{v}'" for k, v in opts.items())


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


# --- connector options ----------------------------------------------------------------------


class Connectors:
    """Live Kafka connector options for inputs and outputs."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def topic(self, name: str) -> str:
        return f"{self.s.topic_prefix}{name}"

    def idle_timeout_ms(self, name: str) -> int:
        if name == "market_status":
            return self.s.status_idle_timeout_ms
        return self.s.idle_timeout_ms

    def position(self, name: str) -> str:
        """Where a record lies: read from Kafka's record metadata, not from the payload."""
        return (
            "kafka_partition INT METADATA FROM 'partition' VIRTUAL, "
            "kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL"
        )

    def source(self, name: str) -> dict[str, str]:
        opts = {
            "connector": "kafka",
            "topic": self.topic(name),
            "properties.bootstrap.servers": self.s.bootstrap,
            "properties.group.id": self.s.group_id,
            "properties.isolation.level": "read_committed",
            "properties.auto.offset.reset": "earliest",
            "scan.startup.mode": self.s.startup_mode,
            "scan.watermark.idle-timeout": f"{self.idle_timeout_ms(name)} ms",
            "format": "json",
            # A malformed record must not kill the job: it is skipped, and the gap it leaves in
            # the partition's offsets is reported by sql/80_rejects/input_rejects.sql.
            "json.ignore-parse-errors": "true",
        }
        if self.s.startup_mode == "earliest-offset":
            opts.pop("properties.auto.offset.reset")
        return opts

    def sink(self, name: str, guarantee: str) -> dict[str, str]:
        opts = {
            "connector": "kafka",
            "topic": self.topic(name),
            "properties.bootstrap.servers": self.s.bootstrap,
            "key.format": "raw",
            "key.fields": "ticker",
            "value.format": "json",
            "value.fields-include": "ALL",
            "value.json.timestamp-format.standard": "ISO-8601",
            "value.json.encode.decimal-as-plain-number": "true",
            "sink.delivery-guarantee": guarantee,
        }
        if guarantee == "exactly-once":
            opts["sink.transactional-id-prefix"] = f"{self.s.txn_prefix}-{name}"
            opts["properties.transaction.timeout.ms"] = str(self.s.transaction_timeout_ms)
        else:
            opts["properties.linger.ms"] = "5"
        return opts


class FileConnectors(Connectors):
    """Replay: inputs are bounded JSONL files, each output a folder of JSON-lines part files
    (out_dir/<name>/) in the topic's format: ISO-8601 timestamps, plain decimals."""

    def __init__(self, settings: Settings, inputs: dict[str, Path], out_dir: Path) -> None:
        super().__init__(settings)
        self.inputs = inputs
        self.out_dir = out_dir

    def source(self, name: str) -> dict[str, str]:
        path = self.inputs[name]
        if path.suffix != ".jsonl":
            raise ValueError("replay inputs are converted to sorted JSONL before the job starts")
        return {
            "connector": "filesystem",
            "path": str(path.resolve()),
            "format": "json",
            "json.ignore-parse-errors": "true",
        }

    def position(self, name: str) -> str:
        return "kafka_partition AS CAST(NULL AS INT), kafka_offset AS CAST(NULL AS BIGINT)"

    def sink(self, name: str, guarantee: str) -> dict[str, str]:
        return {
            "connector": "filesystem",
            "path": str((self.out_dir / name).resolve()),
            "format": "json",
            "json.timestamp-format.standard": "ISO-8601",
            "json.encode.decimal-as-plain-number": "true",
        }


def substitute(
    stmt: Statement,
    connectors: Connectors,
    settings: Settings,
    sink_name: str | None,
    guarantee: str | None,
) -> str:
    def repl(match: re.Match) -> str:
        key, arg = match.group(1), match.group(2)
        if key in ("SOURCE", "POSITION"):
            if arg not in INPUTS:
                raise SqlFileError(stmt.path, stmt.line, stmt.col, f"unknown input `{arg}`")
            if key == "SOURCE":
                return _options(connectors.source(arg))
            return connectors.position(arg)
        if key == "SINK":
            if sink_name is None or guarantee is None:
                raise SqlFileError(
                    stmt.path, stmt.line, stmt.col, "${SINK} only in an output's CREATE TABLE"
                )
            return _options(connectors.sink(sink_name, guarantee))
        if key == "WATERMARK_DELAY":
            return f"{settings.watermark_delay_ms / 1000:.3f}"
        if key == "KAFKA_BOOTSTRAP":
            return settings.bootstrap
        if key == "TOPIC_PREFIX":
            return settings.topic_prefix
        if key == "STRATEGY_COLUMNS":
            return backtest_sql.COLUMNS
        if key == "STRATEGY_PNL" and arg:
            return backtest_sql.pnl_select(arg, settings)
        raise SqlFileError(stmt.path, stmt.line, stmt.col, f"unknown placeholder ${{{key}}}")

    return PLACEHOLDER.sub(repl, stmt.text)


# --- the Flink side -------------------------------------------------------------------------


def prepare_jvm_environment(settings: Settings, quick_start: bool = False) -> None:
    """Cap the JVM and keep its temp files and logs in .run/ (must run before PyFlink starts).

    quick_start: JIT-compile with C1 only. Planning a job is mostly run-once code, and on 2
    cores the C2 compiler threads took half the CPU of a short replay (docs/performance.md,
    Engine); a long-running job keeps C2 for its steady state.
    """
    tmp = RUN / "tmp"
    logs = RUN / "logs" / "flink"
    tmp.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    # Metaspace: one JVM may plan and run many jobs (the test session runs ~60, each MiniCluster
    # loading its own Pekko and generated classes); 384m ran out after ~50 of them.
    os.environ.setdefault(
        "JVM_ARGS",
        f"-Xmx{settings.jvm_heap_mb}m -Xms256m -XX:MaxMetaspaceSize=1024m "
        f"-XX:+UseG1GC -Djava.io.tmpdir={tmp}"
        + (" -XX:TieredStopAtLevel=1" if quick_start else ""),
    )
    os.environ.setdefault("FLINK_LOG_DIR", str(logs))
    # Python workers import udfs/ from the repository root.
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def create_table_env(
    settings: Settings,
    streaming: bool = True,
    extra: dict[str, str] | None = None,
    quick_start: bool = False,
):
    prepare_jvm_environment(settings, quick_start)
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env_settings = (
        EnvironmentSettings.in_streaming_mode()
        if streaming
        else EnvironmentSettings.in_batch_mode()
    )
    t_env = TableEnvironment.create(env_settings)
    config = t_env.get_config()
    for key, value in base_config(settings).items():
        config.set(key, value)
    for key, value in (extra or {}).items():
        config.set(key, value)
    return t_env


def base_config(settings: Settings) -> dict[str, str]:
    return {
        "pipeline.name": settings.job_name,
        "pipeline.jars": connector_jar().as_uri(),
        "parallelism.default": str(settings.parallelism),
        "table.local-time-zone": "UTC",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.fn-execution.bundle.time": str(settings.python_bundle_time_ms),
        # The pandas OVER operator counts every row of every window it sends (up to 300 per
        # candle) towards the bundle; results wait at most bundle.time either way.
        "python.fn-execution.bundle.size": "1000",
        # Views shared by several outputs (bars, indicator_series_1m) are planned once: without
        # this the planner prunes each use differently and runs the Python UDAFs twice.
        "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": str(settings.rest_port),
        "taskmanager.memory.managed.size": "256m",
        "taskmanager.numberOfTaskSlots": "4",
    }


def streaming_config(settings: Settings, restore_from: Path | None) -> dict[str, str]:
    cfg = {
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.dir": settings.checkpoint_dir.resolve().as_uri(),
        "execution.checkpointing.num-retained": "3",
        "state.backend.type": "hashmap",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        # Latency of every event-time result (issue #7): windows close at the first watermark
        # past their end, and watermarks are emitted every this often (Flink's default 200 ms).
        "pipeline.auto-watermark-interval": "50 ms",
        # A network buffer between tasks is flushed when full or after this long (default
        # 100 ms): a row crosses 5-7 exchanges between source and sink in this job.
        "execution.buffer-timeout.interval": "10 ms",
    }
    if restore_from is not None:
        cfg["execution.state-recovery.path"] = restore_from.resolve().as_uri()
        # Outputs added since the checkpoint have no state there: start them from scratch.
        cfg["execution.state-recovery.ignore-unclaimed-state"] = "true"
    return cfg


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest completed, retained checkpoint (a chk-N folder holding _metadata)."""
    if not checkpoint_dir.exists():
        return None
    done = [m.parent for m in checkpoint_dir.glob("*/chk-*/_metadata")]
    done += [m.parent for m in checkpoint_dir.glob("savepoint-*/_metadata")]
    return max(done, key=lambda p: p.stat().st_mtime) if done else None


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


def planner_errors(t_env, plan: Plan, statement_set, settings: Settings) -> list[SqlFileError]:
    """Plan the whole statement set as it will run; on failure, find the outputs at fault."""
    if statement_set is None or not plan.outputs:
        return []
    try:
        statement_set.explain()
        return []
    except Exception as exc:
        errors = explain_each(t_env, plan)
        if errors:
            return errors
        return [SqlFileError(settings.sql_dir, 1, 1, f"the outputs together: {java_message(exc)}")]


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
                "grain": [c.strip() for c in header.get("grain", "").split(",") if c.strip()],
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
        for column in output.file.header.get("grain", "").split(","):
            column = column.strip()
            if column and column not in names:
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
