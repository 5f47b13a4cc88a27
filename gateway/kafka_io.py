"""Kafka side: one reader thread per topic feeding the hub, and range reads for resumes.

kafka-python is blocking, so each reader owns a thread and a consumer (no group: every gateway
reads every partition, and commits nothing). Readers hand batches to the event loop with
`call_soon_threadsafe`; a semaphore bounds how many batches wait there, so a busy loop slows the
reader instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from gateway.catalog import StreamSpec
from gateway.hub import Hub
from gateway.rows import Entry, to_entry

log = logging.getLogger("gateway.kafka")

POLL_MS = 200
PROBE_EVERY_S = 5.0  # how often a reader asks the broker for end offsets (lag, reachability)
BATCHES_IN_FLIGHT = 4


def _consumer(bootstrap: str, client_id: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        # Result topics are written in transactions: never show rows of an aborted one.
        isolation_level="read_committed",
        bootstrap_timeout_ms=5000,
        request_timeout_ms=10000,
        fetch_max_wait_ms=100,  # latency over batching: rows are small and few per second
        max_poll_records=1000,
    )


class TopicReader:
    """Reads one stream's topic from (end - backfill) onwards into the hub, until stopped."""

    def __init__(self, spec: StreamSpec, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.hub = hub
        self.loop = loop
        self.settings = hub.settings
        self.next_offsets: dict[int, int] | None = None  # survives reconnects of the consumer
        self._stop = threading.Event()
        self._in_flight = threading.Semaphore(BATCHES_IN_FLIGHT)
        self._thread = threading.Thread(target=self._run, name=f"kafka-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _call(self, method: Callable[..., None], *args: object) -> None:
        try:
            self.loop.call_soon_threadsafe(method, *args)
        except RuntimeError:  # loop closed during shutdown
            self._stop.set()

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = _consumer(
                    self.settings.bootstrap or "", f"moex-gateway-{self.spec.name}"
                )
                if self._assign(consumer):
                    backoff = 1.0
                    self._consume(consumer)
            except Exception as exc:  # kafka-python raises many kinds; keep the reader alive
                message = f"{type(exc).__name__}: {exc}"
                log.warning("reader %s: %s; retrying in %.0fs", self.spec.name, message, backoff)
                self._call(self.hub.on_contact, self.spec.name, None, message)
            finally:
                if consumer is not None:
                    try:
                        consumer.close(autocommit=False, timeout_ms=2000)
                    except Exception:  # closing a broken consumer: nothing to save
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def _assign(self, consumer: KafkaConsumer) -> bool:
        topic = self.spec.source_topic
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            self._call(self.hub.on_contact, self.spec.name, None, None)
            self._call(
                self.hub.on_status,
                self.spec.name,
                "waiting for topic",
                f"topic {topic} does not exist",
            )
            return False
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if self.next_offsets is None:
            ends = consumer.end_offsets(tps, timeout_ms=10000)
            begins = consumer.beginning_offsets(tps, timeout_ms=10000)
            start = {tp.partition: max(begins[tp], ends[tp] - self.settings.backfill) for tp in tps}
            self.next_offsets = dict(start)
            self._call(
                self.hub.on_assigned, self.spec.name, start, {tp.partition: ends[tp] for tp in tps}
            )
        for tp in tps:
            consumer.seek(tp, self.next_offsets.get(tp.partition, 0))
        return True

    def _consume(self, consumer: KafkaConsumer) -> None:
        tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        next_probe = 0.0
        while not self._stop.is_set():
            batch = consumer.poll(timeout_ms=POLL_MS)
            if time.monotonic() >= next_probe:
                self._probe(consumer, tps)
                next_probe = time.monotonic() + PROBE_EVERY_S
            if not batch:
                continue
            entries: list[Entry] = []
            bad = 0
            for tp, records in batch.items():
                for record in records:
                    entry = to_entry(
                        self.spec, tp.partition, record.offset, record.key, record.value
                    )
                    if entry is None:
                        bad += 1
                    else:
                        entries.append(entry)
            positions = {tp.partition: consumer.position(tp) for tp in batch}
            assert self.next_offsets is not None
            self.next_offsets.update(positions)
            entries.sort(key=lambda e: (e.partition, e.offset))
            while not self._in_flight.acquire(timeout=0.5):
                if self._stop.is_set():
                    return
            self._call(self._hand_over, entries, positions, bad)

    def _hand_over(self, entries: list[Entry], positions: dict[int, int], bad: int) -> None:
        """Runs on the loop thread."""
        try:
            self.hub.ingest(self.spec.name, entries, positions, bad)
            self.hub.on_contact(self.spec.name, None)
        finally:
            self._in_flight.release()

    def _probe(self, consumer: KafkaConsumer, tps: list[TopicPartition]) -> None:
        try:
            ends = consumer.end_offsets(tps, timeout_ms=3000)
        except KafkaError as exc:
            self._call(self.hub.on_contact, self.spec.name, None, f"broker did not answer: {exc}")
            return
        self._call(self.hub.on_contact, self.spec.name, {tp.partition: ends[tp] for tp in tps})


def read_range(
    bootstrap: str, spec: StreamSpec, partition: int, start: int, end: int, limit: int
) -> tuple[list[Entry], int]:
    """Records [start, end) of one partition, at most the last `limit` of them.

    Returns the entries and the offset actually read from: later than `start` when retention
    deleted the older records or `limit` cut them (the caller reports that gap to the client).
    """
    consumer = _consumer(bootstrap, f"moex-gateway-replay-{spec.name}")
    try:
        tp = TopicPartition(spec.source_topic, partition)
        consumer.assign([tp])
        first = consumer.beginning_offsets([tp], timeout_ms=10000)[tp]
        begin = max(start, first, end - limit)
        if begin >= end:
            return [], begin
        consumer.seek(tp, begin)
        entries: list[Entry] = []
        deadline = time.monotonic() + 60
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {tp.topic}[{partition}] {begin}..{end} took over 60 s")
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                if record.offset >= end:
                    break
                entry = to_entry(spec, partition, record.offset, record.key, record.value)
                if entry is not None:
                    entries.append(entry)
        return entries, begin
    finally:
        consumer.close(autocommit=False, timeout_ms=2000)
