"""The local broker: transactions work on one node, data survives a restart."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from stack.kafka import KafkaBroker, free_port
from stack.topics import create_topics, load_topics

pytestmark = pytest.mark.kafka


def test_topics_when_created_then_every_declared_topic_exists(kafka_bootstrap: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert set(load_topics()) <= set(admin.list_topics())
    finally:
        admin.close()
    # A second run creates nothing and does not fail.
    assert create_topics(kafka_bootstrap) == []


def test_broker_when_transaction_aborted_then_read_committed_sees_only_committed(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id="t-abort")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(unique_topic, key=b"SBER", value=b"aborted")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(unique_topic, key=b"SBER", value=b"committed")
    producer.commit_transaction()
    producer.close()

    consumer = KafkaConsumer(
        unique_topic,
        bootstrap_servers=kafka_bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    values = [record.value for record in consumer]
    consumer.close()
    assert values == [b"committed"]


def test_broker_when_restarted_then_data_survives() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="moex-test-restart-"))
    broker = KafkaBroker(data_dir, free_port(), free_port(), heap_mb=256)
    try:
        broker.start()
        create_topics(broker.bootstrap)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        producer.send("moex.dlq", b"kept").get(timeout=10)
        producer.close()
        broker.stop()
        broker.start()
        consumer = KafkaConsumer(
            "moex.dlq",
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        assert [r.value for r in consumer] == [b"kept"]
        consumer.close()
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
