"""Kafka as the fault tests see it: topics under a run's own prefix, reading a topic to its
end (or keeping up with it), committed offsets, publishing records."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stack import topics
from stack.topics import create_plain_topics, load_topics
from tests.processes import wait_for


def topic_names(prefix: str) -> dict[str, int]:
    """Every declared topic (topics.toml) under `prefix` instead of `moex.`, with partitions."""
    return {
        f"{prefix}{spec.name.removeprefix('moex.')}": spec.partitions
        for spec in load_topics().values()
    }


def create_prefixed_topics(bootstrap: str, prefix: str, replication_factor: int = 1) -> list[str]:
    names = topic_names(prefix)
    create_plain_topics(bootstrap, names, replication_factor, client_id="faults-admin")
    return list(names)


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    try:
        topics.delete_topics(bootstrap, names, client_id="faults-admin", timeout_s=0)
    except Exception:
        pass  # the broker is gone (its own data dir is removed with it)


def new_prefix(tag: str) -> str:
    return f"f{tag}{uuid.uuid4().hex[:6]}."


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        return json.loads(self.value, parse_float=Decimal) if self.value is not None else None


class TopicTail:
    """Reads a topic from the beginning and keeps up with it (one consumer, assigned by hand)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        committed: bool = True,
        parse: bool = True,
        client_id: str = "faults-tail",
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_committed" if committed else "read_uncommitted",
            enable_auto_commit=False,
            group_id=None,
            client_id=client_id,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        partitions = wait_for(
            lambda: self.consumer.partitions_for_topic(topic), 30, f"partitions of {topic}"
        )
        self.tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.parse = parse  # rows() as JSON; off for topics of hostile (non-JSON) records
        self.records: list[Record] = []
        self._rows: list[dict] = []

    def poll(self, timeout_ms: int = 200) -> int:
        before = len(self.records)
        for batch in self.consumer.poll(timeout_ms=timeout_ms).values():
            for r in batch:
                record = Record(r.partition, r.offset, r.key, r.value)
                self.records.append(record)
                if self.parse and r.value is not None:
                    self._rows.append(record.json())
        return len(self.records) - before

    def drain(self, timeout_s: float = 60.0) -> list[Record]:
        """Read up to the end as it is now (the last stable offset for read_committed)."""
        ends = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout_s
        while any(self.consumer.position(tp) < ends[tp] for tp in self.tps):
            if time.monotonic() > deadline:
                left = {tp.partition: (self.consumer.position(tp), ends[tp]) for tp in self.tps}
                raise AssertionError(f"reading {self.topic} did not reach its end: {left}")
            self.poll(500)
        return self.records

    def rows(self) -> list[dict]:
        """The records read so far, parsed (numbers with a fraction as Decimal)."""
        return self._rows

    def close(self) -> None:
        self.consumer.close()


def read_topic(
    bootstrap: str, topic: str, committed: bool = True, timeout_s: float = 60.0
) -> list[Record]:
    """Every record of `topic` up to its current end (the last stable offset when committed)."""
    tail = TopicTail(bootstrap, topic, committed, parse=False, client_id="faults-reader")
    try:
        return tail.drain(timeout_s)
    finally:
        tail.close()


def end_offsets(bootstrap: str, topic: str, committed: bool = True) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed" if committed else "read_uncommitted",
        group_id=None,
        enable_auto_commit=False,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_source_offsets(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` the job's checkpoints have confirmed (offsets committed on checkpoint)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="faults-offsets")
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def publish_lines(
    bootstrap: str,
    topic: str,
    lines: Iterable[tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, int]],
) -> int:
    """Send (key, value[, partition]) with an idempotent producer; return the count acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=10,
        client_id="faults-publisher",
    )
    futures = []
    try:
        for item in lines:
            key, value = item[0], item[1]
            partition = item[2] if len(item) > 2 else None
            futures.append(producer.send(topic, key=key, value=value, partition=partition))
        producer.flush(60)
        for future in futures:
            future.get(timeout=30)
        return len(futures)
    finally:
        producer.close(10)
