"""Connector options of the job's inputs and outputs, and the placeholders of sql/ filled in.

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

import re
from pathlib import Path

from runner import backtest_sql
from runner.settings import Settings
from runner.sqlfiles import SqlFileError, Statement

PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)(?::([a-z_0-9]+))?\}")
INPUTS = ("trades", "orderbook", "market_status")


def _options(opts: dict[str, str]) -> str:
    return ", ".join(f"'{k}' = '{v}'" for k, v in opts.items())


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
