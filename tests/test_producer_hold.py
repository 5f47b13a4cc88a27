"""The producer's hold policy without a broker (the real proof is the two-brokers-down test in
tests/test_faults_cluster.py): a send() that timed out is tried again and appends one record,
the source waits once `max_held` records are unacknowledged, the hold is said and released."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest
from kafka.errors import KafkaTimeoutError

from producer.sinks import HoldingSender, SinkError


class _Future:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[object], None]] = []

    def add_callback(self, callback: Callable[[object], None]) -> None:
        self.callbacks.append(callback)

    def add_errback(self, callback: object) -> None:
        pass

    def acknowledge(self) -> None:
        for callback in self.callbacks:
            callback(None)


class StalledProducer:
    """Times out `timeouts` send() calls (no metadata, nothing appended), then appends and
    keeps every record unacknowledged until ack_all(), like a producer with brokers down."""

    def __init__(self, timeouts: int = 0) -> None:
        self.timeouts = timeouts
        self.appended: list[tuple[str, bytes | None, bytes | None]] = []
        self.futures: list[_Future] = []

    def send(self, topic: str, value: bytes | None, key: bytes | None = None) -> _Future:
        if self.timeouts:
            self.timeouts -= 1
            raise KafkaTimeoutError("Failed to update metadata after 0.1 secs.")
        self.appended.append((topic, key, value))
        self.futures.append(_Future())
        return self.futures[-1]

    def ack_all(self) -> None:
        for future in self.futures:
            future.acknowledge()
        self.futures = []


def test_hold_when_send_times_out_then_retried_and_appended_once() -> None:
    producer = StalledProducer(timeouts=2)
    lines: list[str] = []
    sender = HoldingSender(producer, "kafka:1", say=lines.append, hold_after_s=0.05)
    sender.send("t", b"k", b"v")
    assert producer.appended == [("t", b"k", b"v")] and sender.held == 1
    assert any(line.startswith("holding: KafkaTimeoutError") for line in lines), lines


def test_hold_when_buffer_full_then_source_waits_until_acknowledged() -> None:
    producer = StalledProducer()
    lines: list[str] = []
    sender = HoldingSender(producer, "kafka:1", max_held=3, say=lines.append, hold_after_s=0.05)
    for n in range(3):
        sender.send("t", None, b"%d" % n)
    fourth = threading.Thread(target=sender.send, args=("t", None, b"3"))
    fourth.start()
    fourth.join(1.2)
    assert fourth.is_alive() and len(producer.appended) == 3  # blocked, not dropped
    assert any("3 records buffered" in line for line in lines), lines
    producer.ack_all()
    fourth.join(5)
    assert not fourth.is_alive() and len(producer.appended) == 4 and sender.held == 1
    time.sleep(0.01)
    sender.send("t", None, b"4")
    assert any(line.startswith("released:") for line in lines), lines


def test_hold_when_stopped_while_full_then_clear_error() -> None:
    stop = threading.Event()
    sender = HoldingSender(StalledProducer(), "kafka:1", max_held=1, stop=stop, say=print)
    sender.send("t", None, b"0")
    stop.set()
    with pytest.raises(SinkError, match="stopped while holding: 1 records not acknowledged"):
        sender.send("t", None, b"1")


def test_hold_when_kafka_python_logs_an_error_then_its_name_is_kept_and_nothing_raised() -> None:
    from producer.sinks import _LastKafkaError, _quiet_kafka_logs

    _quiet_kafka_logs()  # what idempotent_producer() does first
    # The handler runs on kafka-python's I/O thread, where an exception would stop delivery.
    logging.getLogger("kafka.producer.sender").warning(
        "Got error produce response on topic-partition %s, retrying (%s attempts left): %s%s",
        "t-0",
        "inf",
        "NotEnoughReplicasError",
        "",
    )
    assert _LastKafkaError.error == "NotEnoughReplicasError"
