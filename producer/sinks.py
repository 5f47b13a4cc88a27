"""Where validated records go: Kafka topics, JSONL files, or a list (tests).

Every sink takes `send(kind, key, text)`: kind is one of TRADES, ORDERBOOK, MARKET_STATUS,
DLQ; key the ticker (None for the DLQ); text the exact JSON payload.

Over 300 lines: the Kafka sink's delivery policy (idempotent, acks=all, hold while the brokers
cannot take writes, a bounded buffer) is most of it, kept next to the two other sinks it mirrors.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from producer.records import Topics

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from kafka.producer.future import FutureRecordMetadata as Future

TRADES, ORDERBOOK, MARKET_STATUS, DLQ = range(4)
KIND_NAMES = ("trades", "orderbook", "market_status", "dlq")
OUT_FILES = tuple(f"{name}.jsonl" for name in KIND_NAMES)


def describe_error(exc: BaseException) -> str:
    text = str(exc)  # kafka-python's errors already start with their class name
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


class SinkError(Exception):
    """The sink cannot take records (broker unreachable, delivery failing, disk error)."""


class Sink(Protocol):
    failure: str | None  # set, from any thread, when delivery has failed for good

    def send(self, kind: int, key: str | None, text: str) -> None: ...

    def flush(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def out_paths(out: Path) -> tuple[Path, Path, Path, Path]:
    """`--out DIR` -> DIR/{trades,orderbook,market_status,dlq}.jsonl; `--out X.jsonl` -> trades
    in X.jsonl, the other three beside it under their own names."""
    if out.suffix.lower() == ".jsonl":
        folder = out.parent
        if out.name in OUT_FILES[1:]:
            raise SinkError(f"{out}: that name is kept for the {out.stem} records; name another")
        return (out, folder / OUT_FILES[1], folder / OUT_FILES[2], folder / OUT_FILES[3])
    return tuple(out / name for name in OUT_FILES)


class FileSink:
    failure: str | None = None

    def __init__(self, out: Path) -> None:
        self.paths = out_paths(out)
        try:
            for path in self.paths:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._files: list[IO[str]] = [
                path.open("w", encoding="utf-8", buffering=1 << 20) for path in self.paths
            ]
        except OSError as exc:
            raise SinkError(f"cannot write {out}: {exc}") from exc
        self._writes = [f.write for f in self._files]

    def send(self, kind: int, key: str | None, text: str) -> None:
        self._writes[kind](text + "\n")

    def flush(self, timeout_s: float = 0) -> None:
        for f in self._files:
            f.flush()

    def close(self) -> None:
        for f in self._files:
            f.close()

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.paths)


class MemorySink:
    """Keeps (kind, key, text) in a list: for tests and embedding."""

    failure: str | None = None

    def __init__(self) -> None:
        self.sent: list[tuple[int, str | None, str]] = []

    def send(self, kind: int, key: str | None, text: str) -> None:
        self.sent.append((kind, key, text))

    def texts(self, kind: int) -> list[str]:
        return [text for k, _, text in self.sent if k == kind]

    def flush(self, timeout_s: float = 0) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "memory"


def pick_compression(requested: str) -> str | None:
    """`auto`: lz4 when the Python `lz4` package is installed, else gzip (stdlib).

    Never zstd by default: kafka-python could write it (the `zstandard` package comes with
    apache-flink's dependencies), but the Flink Kafka SQL connector jar does not bundle
    zstd-jni, so the Flink job could not read such batches. lz4 (in flink-dist) and gzip (JDK)
    are readable everywhere here.
    """
    from kafka import codec

    available = {
        "lz4": codec.has_lz4(),
        "zstd": codec.has_zstd(),
        "gzip": True,
        "snappy": codec.has_snappy(),
    }
    if requested == "none":
        return None
    if requested == "auto":
        return "lz4" if available["lz4"] else "gzip"
    if not available.get(requested, False):
        missing = {"lz4": "lz4", "zstd": "zstandard", "snappy": "python-snappy"}[requested]
        raise SinkError(f"compression {requested} needs the Python package {missing}")
    return requested


# kafka-python's largest delivery timeout (a Java int of milliseconds, ~24.8 days): a batch
# waiting for Kafka is retried, never expired, so "hold" is the default, not "fail".
HOLD_MS = 2**31 - 1
# Records handed to kafka-python and not yet acknowledged, at most (kafka-python 3 has no
# buffer_memory bound of its own): the source waits when this many are held.
MAX_HELD_RECORDS = 50_000
# No acknowledgement for this long while records wait: the producer says it holds.
HOLD_AFTER_S = 10.0  # kafka-python's request timeout: one unanswered request is not yet a hold
HOLD_LOG_EVERY_S = 10.0
RETRY_BACKOFF_S = (0.1, 5.0)  # first and longest pause between attempts of a send() that timed out


class _LastKafkaError(logging.Handler):
    """Keeps the name of the last error kafka-python's sender logged (NOT_ENOUGH_REPLICAS, a
    broker unavailable, ...) for the hold line; kafka-python's own log lines stay silent."""

    error = ""
    # Not `_name`: logging.Handler keeps its own name there.
    _error_names = re.compile(r"\b(\w+Error)\b")

    def emit(self, record: logging.LogRecord) -> None:
        # Runs on kafka-python's I/O thread: an exception here would kill that thread.
        try:
            found = self._error_names.findall(record.getMessage())
        except Exception:
            return
        if found:
            _LastKafkaError.error = found[-1]


def _quiet_kafka_logs() -> None:
    # kafka-python logs every failed connection attempt at ERROR: our own lines say it.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    sender = logging.getLogger("kafka.producer.sender")
    if not any(isinstance(h, _LastKafkaError) for h in sender.handlers):
        sender.addHandler(_LastKafkaError())
        sender.setLevel(logging.WARNING)
        sender.propagate = False


def idempotent_producer(bootstrap: str, client_id: str, **config: object) -> KafkaProducer:
    """kafka-python's idempotent acks=all producer set to hold while Kafka cannot take writes:
    its batches are retried (same producer id and sequence numbers, so the broker drops a
    repeat) until acknowledged, never expired. Use it through HoldingSender."""
    from kafka import KafkaProducer

    _quiet_kafka_logs()
    settings: dict[str, object] = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": client_id,
        "enable_idempotence": True,  # explicit: a conflicting setting then raises
        "acks": "all",
        "linger_ms": 20,
        "request_timeout_ms": 10_000,
        "delivery_timeout_ms": HOLD_MS,
        "max_block_ms": 15_000,  # how long send() waits for a topic's metadata
    }
    settings.update(config)
    return KafkaProducer(**settings)


class HoldingSender:
    """Sends through an idempotent producer and holds while Kafka cannot take writes (two of
    three brokers down: NOT_ENOUGH_REPLICAS; or no broker): records stay in the producer,
    which retries them, up to `max_held` unacknowledged records; then send() blocks the
    source. A send() that timed out waiting for metadata appended nothing and is simply
    tried again, so no record is dropped and none is written twice. One line says when it
    holds (and every HOLD_LOG_EVERY_S), one when Kafka acknowledges again."""

    def __init__(
        self,
        producer: KafkaProducer,
        where: str,
        max_held: int = MAX_HELD_RECORDS,
        stop: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
        hold_after_s: float = HOLD_AFTER_S,
    ) -> None:
        from kafka.errors import KafkaError, KafkaTimeoutError

        self.producer = producer
        self.where = where
        self.max_held = max_held
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.holding_since: float | None = None
        self.hold_after_s = hold_after_s
        self._stop = stop or threading.Event()
        self._say = say or (lambda line: print(f"producer: {line}", file=sys.stderr, flush=True))
        self._last_ack = time.monotonic()
        self._busy_since = 0.0  # since when the producer has had something to answer for
        self._last_said = 0.0
        self._room = threading.Condition()
        self._kafka_error, self._timeout_error = KafkaError, KafkaTimeoutError

    @property
    def held(self) -> int:
        return self.sent - self.acked - self.failed

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> Future:
        """Hands one record to the producer; returns its future (callbacks as kafka-python's)."""
        if self.held >= self.max_held:
            self._wait_for_room()
        extra = {} if partition is None else {"partition": partition}
        pause = RETRY_BACKOFF_S[0]
        if self.held == 0:
            self._busy_since = time.monotonic()
        retrying = False
        while True:
            self._check_hold(retrying)
            try:
                future = self.producer.send(topic, value=value, key=key, **extra)
                break
            except self._timeout_error as exc:  # nothing appended: trying again adds no copy
                _LastKafkaError.error = type(exc).__name__
                retrying = True
                self._hold_or_stop(pause)
                pause = min(pause * 2, RETRY_BACKOFF_S[1])
            except self._kafka_error as exc:
                raise SinkError(
                    f"Kafka at {self.where} does not take records: {describe_error(exc)}"
                ) from None
        self.sent += 1
        future.add_callback(self._acknowledged)
        future.add_errback(self._not_delivered)
        return future

    def _acknowledged(self, _metadata: object) -> None:
        # On the producer's I/O thread.
        with self._room:
            self.acked += 1
            self._last_ack = time.monotonic()
            self._room.notify_all()

    def _not_delivered(self, _exc: BaseException) -> None:
        with self._room:
            self.failed += 1
            self._room.notify_all()

    def _wait_for_room(self) -> None:
        with self._room:
            while self.held >= self.max_held:
                self._check_hold()
                if self._stop.is_set():
                    raise SinkError(self._stopped())
                self._room.wait(1.0)

    def _hold_or_stop(self, pause: float) -> None:
        if self._stop.wait(pause):
            raise SinkError(self._stopped())

    def _stopped(self) -> str:
        return (
            f"stopped while holding: {self.held} records not acknowledged by Kafka at {self.where}"
        )

    def _check_hold(self, retrying: bool = False) -> None:
        now = time.monotonic()
        quiet = now - max(self._last_ack, self._busy_since)
        waiting = retrying or self.held > 0
        if self.holding_since is None:
            if waiting and quiet >= self.hold_after_s:
                self.holding_since = now - quiet
                self._say_hold(now)
        elif not waiting or quiet < self.hold_after_s:
            self._say(
                f"released: Kafka at {self.where} acknowledges again after "
                f"{now - self.holding_since:.0f} s of holding; {self.held} records in flight"
            )
            self.holding_since = None
        elif now - self._last_said >= HOLD_LOG_EVERY_S:
            self._say_hold(now)

    def _say_hold(self, now: float) -> None:
        self._last_said = now
        error = _LastKafkaError.error or "no acknowledgement"
        self._say(
            f"holding: {error} / broker unavailable at {self.where} for "
            f"{now - (self.holding_since or now):.0f} s, {self.held} records buffered "
            f"(at {self.max_held} the source waits; none dropped)"
        )

    def flush(self, timeout_s: float) -> None:
        self._check_hold()
        try:
            self.producer.flush(timeout=timeout_s)
        except self._kafka_error as exc:
            raise SinkError(
                f"{self.held} records not confirmed by Kafka at {self.where} within "
                f"{timeout_s:g} s ({type(exc).__name__})"
            ) from None


class KafkaSink:
    """An idempotent kafka-python producer; keys are tickers, values compact JSON (UTF-8).

    While Kafka cannot take writes the sink holds (HoldingSender): a line on stderr, records
    kept and retried, the source blocked once MAX_HELD_RECORDS wait; nothing is dropped.
    `delivery_timeout_s` > 0 instead fails the run when a record waits that long."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        compression: str = "auto",
        connect_timeout_s: float = 15.0,
        delivery_timeout_s: float = 0.0,
        on_failure: threading.Event | None = None,
        max_held: int = MAX_HELD_RECORDS,
    ) -> None:
        from kafka.errors import KafkaError

        self.bootstrap = bootstrap
        self.topics = topics.all()
        self.compression = pick_compression(compression)
        self.failure = None
        self._on_failure = on_failure
        self._keys: dict[str, bytes] = {}
        timeout_ms = int(connect_timeout_s * 1000)
        try:
            producer = idempotent_producer(
                bootstrap,
                "moex-producer",
                compression_type=self.compression,
                batch_size=256 * 1024,
                max_request_size=1024 * 1024,
                bootstrap_timeout_ms=timeout_ms,  # how long to find a broker at start
                max_block_ms=timeout_ms,  # how long one send() attempt waits for metadata
                delivery_timeout_ms=int(delivery_timeout_s * 1000)
                if delivery_timeout_s
                else HOLD_MS,
            )
        except KafkaError as exc:
            raise SinkError(
                f"cannot reach Kafka at {bootstrap} within {connect_timeout_s:g} s "
                f"({describe_error(exc)}); is the broker running?"
            ) from None
        self._producer = producer
        self._sender = HoldingSender(producer, bootstrap, max_held, stop=on_failure)
        self._kafka_error = KafkaError
        for topic in self.topics:  # fail now, not at the first record of a rare kind
            try:
                producer.partitions_for(topic)
            except KafkaError as exc:
                self.close()
                raise SinkError(
                    f"topic {topic} not found on {bootstrap} within {connect_timeout_s:g} s "
                    f"({type(exc).__name__}); create the topics with "
                    f"`python -m stack.topics create --bootstrap {bootstrap}`"
                ) from None

    @property
    def failed_records(self) -> int:
        return self._sender.failed

    def _failed(self, exc: BaseException) -> None:
        # Runs on the producer's I/O thread: only a non-retriable error or an explicit delivery
        # timeout gets here; record the first failure and ask the run to stop.
        if self.failure is None:
            self.failure = f"delivery to Kafka at {self.bootstrap} failed: {describe_error(exc)}"
            if self._on_failure is not None:
                self._on_failure.set()

    def send(self, kind: int, key: str | None, text: str) -> None:
        key_bytes = None
        if key is not None:
            key_bytes = self._keys.get(key)
            if key_bytes is None:
                key_bytes = self._keys[key] = key.encode("utf-8")
        future = self._sender.send(self.topics[kind], key_bytes, text.encode("utf-8"))
        future.add_errback(self._failed)

    def flush(self, timeout_s: float = 30.0) -> None:
        self._sender.flush(timeout_s)

    def close(self) -> None:
        try:
            self._producer.close(timeout=5)
        except Exception:  # closing after a failure must not hide the failure's message
            pass

    def describe(self) -> str:
        codec = self.compression or "no"
        return f"Kafka {self.bootstrap} ({codec} compression), topics {', '.join(self.topics)}"
