"""Topic declarations from topics.toml, and their creation on a broker.

python -m stack.topics create --bootstrap 127.0.0.1:9092 [--replication-factor 3]
python -m stack.topics list
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from stack.paths import TOPICS_FILE


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str


def load_topics(path: Path = TOPICS_FILE) -> dict[str, TopicSpec]:
    doc = tomllib.loads(path.read_text())
    defaults = doc.get("defaults", {})
    specs = {}
    for name, overrides in doc["topics"].items():
        merged = {**defaults, **overrides}
        specs[name] = TopicSpec(
            name=name,
            partitions=int(merged["partitions"]),
            retention_ms=int(merged["retention_ms"]),
            cleanup_policy=str(merged["cleanup_policy"]),
        )
    return specs


def create_topics(
    bootstrap: str,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    timeout_s: float = 60.0,
) -> list[str]:
    """Create every declared topic that does not exist yet; return the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="moex-topics")
            break
        except Exception as exc:  # broker still starting
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker at {bootstrap} unreachable: {exc}") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        isr = min_insync_replicas or (2 if replication_factor >= 3 else 1)
        new = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                topic_configs={
                    "retention.ms": str(spec.retention_ms),
                    "cleanup.policy": spec.cleanup_policy,
                    "min.insync.replicas": str(isr),
                },
            )
            for spec in load_topics().values()
            if spec.name not in existing
        ]
        if new:
            admin.create_topics(new)
        return [t.name for t in new]
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.topics")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create the declared topics that are missing")
    create.add_argument("--bootstrap", default="127.0.0.1:9092")
    create.add_argument("--replication-factor", type=int, default=1)
    create.add_argument("--min-insync-replicas", type=int, default=None)
    sub.add_parser("list", help="print the declared topics")
    args = parser.parse_args(argv)
    if args.command == "list":
        for spec in load_topics().values():
            print(f"{spec.name}\tpartitions={spec.partitions}\tretention_ms={spec.retention_ms}")
        return 0
    created = create_topics(args.bootstrap, args.replication_factor, args.min_insync_replicas)
    print(f"topics: {len(created)} created, {len(load_topics()) - len(created)} already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
