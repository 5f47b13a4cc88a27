"""Every Kafka topic of the platform and its creation on a broker.

    python -m stack.topics create --bootstrap 127.0.0.1:9092 [--replication-factor 3]
    python -m stack.topics list

Where a topic is declared:
  - an output's topic comes from the `-- topic:` header of its sql/ file (and `<topic>_live`
    when the header has `-- twin:`): adding an indicator is one SQL file, nothing else;
  - the inputs the producer writes are listed in topics.toml ([inputs."..."]);
  - partitions, retention and cleanup policy come from topics.toml's [defaults]; an output that
    needs other values gets an [overrides."..."] entry, which must name a topic of sql/.

`make up`, `runner run` and `runner reload` (and the cluster path) create what is missing
before the job is submitted, so a sink never waits for a topic that does not exist; tests and
benchmarks create their own topics here too (create_plain_topics, temporary_topics).

Over 300 lines: reading the declarations, checking them and creating topics are one contract
(what topics.toml and sql/ declare is what the broker gets).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from moex.paths import ROOT, SQL_DIR, TOPICS_FILE

DEFAULT_PREFIX = "moex."


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str
    # Where the topic is declared, for `file:line` messages: an sql/ header or topics.toml.
    declared_in: Path = TOPICS_FILE
    line: int = 1

    def renamed(self, prefix: str) -> TopicSpec:
        """The same topic under another prefix (tests keep apart on a shared broker)."""
        return replace(self, name=prefix + self.name.removeprefix(DEFAULT_PREFIX))


@dataclass
class TopicsReport:
    """What a broker said about a set of topics."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # topic -> the broker's reason it cannot be created
    refused: dict[str, str] = field(default_factory=dict)


def output_topics(sql_dir: Path = SQL_DIR) -> list[tuple[str, Path, int]]:
    """(topic, file, header line) of every output of sql_dir, `_live` twins included."""
    from runner.sqlfiles import SqlFileError, discover, load

    if not sql_dir.is_dir():
        raise FileNotFoundError(f"{sql_dir}: no sql/ folder, so no output topics")
    found = []
    for path in discover(sql_dir):
        try:
            sql_file = load(path)
        except SqlFileError:
            continue  # reported by `runner check`; its topic cannot be known yet
        topic = sql_file.header.get("topic")
        if not sql_file.is_output or not topic:
            continue
        found.append((topic, path, sql_file.header_line["topic"]))
        if "twin" in sql_file.header:
            found.append((f"{topic}_live", path, sql_file.header_line["twin"]))
    return found


def _table_lines(path: Path) -> dict[str, int]:
    """Line of each `[table."name"]` in topics.toml, for messages."""
    lines = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if text.startswith("[") and '"' in text:
            lines[text.split('"')[1]] = number
    return lines


def _spec(name: str, values: dict, declared_in: Path, line: int) -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=int(values["partitions"]),
        retention_ms=int(values["retention_ms"]),
        cleanup_policy=str(values["cleanup_policy"]),
        declared_in=declared_in,
        line=line,
    )


def load_topics(path: Path = TOPICS_FILE, sql_dir: Path = SQL_DIR) -> dict[str, TopicSpec]:
    """Every topic: topics.toml's inputs, then the outputs of sql_dir with their overrides."""
    doc = tomllib.loads(path.read_text())
    defaults = doc.get("defaults", {})
    overrides = doc.get("overrides", {})
    lines = _table_lines(path)
    specs = {
        name: _spec(name, {**defaults, **values}, path, lines.get(name, 1))
        for name, values in doc.get("inputs", {}).items()
    }
    for topic, sql_file, line in output_topics(sql_dir):
        specs[topic] = _spec(topic, {**defaults, **overrides.get(topic, {})}, sql_file, line)
    return specs


def declaration_errors(path: Path = TOPICS_FILE, sql_dir: Path = SQL_DIR) -> list[str]:
    """An override must name an output topic of sql/, and no output may reuse an input."""
    doc = tomllib.loads(path.read_text())
    lines = _table_lines(path)
    outputs = {topic: (file, line) for topic, file, line in output_topics(sql_dir)}
    errors = []
    for name in doc.get("overrides", {}):
        if name not in outputs:
            errors.append(
                f"{shown(path)}:{lines.get(name, 1)}:1: override of `{name}`, which no sql/ output "
                "writes (its `-- topic:` header is the declaration): remove it"
            )
    for name in doc.get("inputs", {}):
        if name in outputs:
            file, line = outputs[name]
            errors.append(f"{shown(file)}:{line}:1: `{name}` is an input topic (topics.toml)")
    return errors


def _admin(bootstrap: str, timeout_s: float, client_id: str = "moex-topics"):
    """An admin client, retried until `timeout_s` (0: one attempt) while the broker starts."""
    from kafka.admin import KafkaAdminClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
        except Exception as exc:  # broker still starting
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker at {bootstrap} unreachable: {exc}") from exc
            time.sleep(0.5)


def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    validate_only: bool = False,
    timeout_s: float = 60.0,
) -> TopicsReport:
    """Create the topics of `specs` that do not exist yet (or, validate_only, ask the broker
    whether it would). Refusals are returned with the broker's reason, never raised."""
    specs = list(specs)
    report = TopicsReport()
    admin = _admin(bootstrap, timeout_s)
    try:
        existing = set(admin.list_topics())
        isr = min_insync_replicas or (2 if replication_factor >= 3 else 1)
        wanted = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": replication_factor,
                "configs": {
                    "retention.ms": str(spec.retention_ms),
                    "cleanup.policy": spec.cleanup_policy,
                    "min.insync.replicas": str(isr),
                },
            }
            for spec in specs
            if spec.name not in existing
        }
        report.existing = [spec.name for spec in specs if spec.name in existing]
        if not wanted:
            return report
        response = admin.create_topics(
            wanted, validate_only=validate_only, raise_errors=False, timeout_ms=30_000
        )
        for topic in response["topics"]:
            if topic["error_code"] == 0:
                report.created.append(topic["name"])
            elif topic["error_code"] == 36:  # TOPIC_ALREADY_EXISTS: made meanwhile, fine
                report.existing.append(topic["name"])
            else:
                report.refused[topic["name"]] = topic["error_message"] or (
                    f"error code {topic['error_code']}"
                )
        if report.created and not validate_only:
            # The job's sinks ask for metadata at once: wait until every partition has a leader.
            admin.wait_for_topics(report.created, timeout_ms=int(timeout_s * 1000))
        return report
    finally:
        admin.close()


def create_topics(
    bootstrap: str,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    timeout_s: float = 60.0,
    sql_dir: Path = SQL_DIR,
    path: Path = TOPICS_FILE,
) -> list[str]:
    """Create every topic of the platform that does not exist yet; return the names created.

    Raises RuntimeError naming each topic the broker refused and where it is declared."""
    specs = load_topics(path, sql_dir)
    report = ensure_topics(bootstrap, specs.values(), replication_factor, min_insync_replicas,
                           timeout_s=timeout_s)  # fmt: skip
    if report.refused:
        raise RuntimeError("\n".join(refusal_messages(report, specs)))
    return report.created


def create_plain_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    replication_factor: int = 1,
    client_id: str = "moex-topics",
) -> list[str]:
    """Topics outside topics.toml (a test's or a benchmark's own), {name: partitions}, with the
    broker's default settings; those that exist are left alone. Returns the names created."""
    from kafka.admin import NewTopic

    admin = _admin(bootstrap, 60.0, client_id)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(n, p, replication_factor) for n, p in partitions.items() if n not in existing
        ]
        if new:
            admin.create_topics(new)
        return [topic.name for topic in new]
    finally:
        admin.close()


def existing_topics(bootstrap: str, client_id: str = "moex-topics") -> set[str]:
    admin = _admin(bootstrap, 60.0, client_id)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def delete_topics(
    bootstrap: str, names: Iterable[str], client_id: str = "moex-topics", timeout_s: float = 60.0
) -> None:
    """Delete topics by name; `timeout_s` bounds the wait for the broker to answer."""
    admin = _admin(bootstrap, timeout_s, client_id)
    try:
        admin.delete_topics(list(names))
    finally:
        admin.close()


@contextmanager
def temporary_topics(bootstrap: str, partitions: Mapping[str, int]) -> Iterator[list[str]]:
    """Topics {name: partitions} for the length of a test, deleted afterwards."""
    create_plain_topics(bootstrap, partitions)
    try:
        yield list(partitions)
    finally:
        delete_topics(bootstrap, list(partitions))


def shown(path: Path) -> Path:
    """A path as a user types it: relative to the repository when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def refusal_messages(report: TopicsReport, specs: dict[str, TopicSpec]) -> list[str]:
    """`file:line:1: topic X cannot be created: <broker's reason>` for each refusal."""
    messages = []
    for name, reason in report.refused.items():
        spec = specs.get(name)
        where = f"{shown(spec.declared_in)}:{spec.line}:1: " if spec else ""
        messages.append(f"{where}topic {name} cannot be created: {reason}")
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.topics")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create the topics that are missing")
    create.add_argument("--bootstrap", default="127.0.0.1:9092")
    create.add_argument("--replication-factor", type=int, default=1)
    create.add_argument("--min-insync-replicas", type=int, default=None)
    listing = sub.add_parser("list", help="print every topic and where it is declared")
    for command in (create, listing):
        command.add_argument("--sql-dir", type=Path, default=SQL_DIR)
    args = parser.parse_args(argv)
    errors = declaration_errors(sql_dir=args.sql_dir)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 2
    specs = load_topics(sql_dir=args.sql_dir)
    if args.command == "list":
        for spec in specs.values():
            print(
                f"{spec.name}\tpartitions={spec.partitions}\tretention_ms={spec.retention_ms}"
                f"\tcleanup={spec.cleanup_policy}\t{shown(spec.declared_in)}:{spec.line}"
            )
        return 0
    try:
        created = create_topics(
            args.bootstrap, args.replication_factor, args.min_insync_replicas, sql_dir=args.sql_dir
        )
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"topics: {len(created)} created, {len(specs) - len(created)} already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
