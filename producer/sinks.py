"""Where validated records go: Kafka topics, JSONL files, or a list (tests).

Every sink takes `send(kind, key, text)`: kind is one of TRADES, ORDERBOOK, MARKET_STATUS,
DLQ; key the ticker (None for the DLQ); text the exact JSON payload.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import IO, Protocol

from producer.records import Topics

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


class KafkaSink:
    """An idempotent kafka-python producer; keys are tickers, values compact JSON (UTF-8)."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        compression: str = "auto",
        connect_timeout_s: float = 15.0,
        delivery_timeout_s: float = 30.0,
        on_failure: threading.Event | None = None,
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.bootstrap = bootstrap
        self.topics = topics.all()
        self.compression = pick_compression(compression)
        self.failure = None
        self.failed_records = 0
        self._on_failure = on_failure
        self._keys: dict[str, bytes] = {}
        timeout_ms = int(connect_timeout_s * 1000)
        # kafka-python logs every failed connection attempt at ERROR: our own message says it.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                client_id="moex-producer",
                enable_idempotence=True,  # explicit: a conflicting setting then raises
                acks="all",
                compression_type=self.compression,
                linger_ms=20,
                batch_size=256 * 1024,
                max_request_size=1024 * 1024,
                bootstrap_timeout_ms=timeout_ms,  # how long to find a broker at start
                max_block_ms=timeout_ms,  # how long send() may wait for metadata or buffer
                request_timeout_ms=10_000,
                delivery_timeout_ms=int(delivery_timeout_s * 1000),  # bounds the retries
            )
        except KafkaError as exc:
            raise SinkError(
                f"cannot reach Kafka at {bootstrap} within {connect_timeout_s:g} s "
                f"({describe_error(exc)}); is the broker running?"
            ) from None
        self._kafka_error = KafkaError
        for topic in self.topics:  # fail now, not at the first record of a rare kind
            try:
                self._producer.partitions_for(topic)
            except KafkaError as exc:
                self.close()
                raise SinkError(
                    f"topic {topic} not found on {bootstrap} within {connect_timeout_s:g} s "
                    f"({type(exc).__name__}); create the topics with "
                    f"`python -m stack.topics create --bootstrap {bootstrap}`"
                ) from None

    def _failed(self, exc: BaseException) -> None:
        # Runs on the producer's I/O thread: record the first failure and ask the run to stop.
        self.failed_records += 1
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
        try:
            future = self._producer.send(
                self.topics[kind], value=text.encode("utf-8"), key=key_bytes
            )
        except self._kafka_error as exc:
            raise SinkError(
                f"Kafka at {self.bootstrap} does not take records: {describe_error(exc)}"
            ) from None
        future.add_errback(self._failed)

    def flush(self, timeout_s: float = 30.0) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except self._kafka_error as exc:
            raise SinkError(
                f"records not confirmed by Kafka at {self.bootstrap} within {timeout_s:g} s "
                f"({type(exc).__name__})"
            ) from None

    def close(self) -> None:
        try:
            self._producer.close(timeout=5)
        except Exception:  # closing after a failure must not hide the failure's message
            pass

    def describe(self) -> str:
        codec = self.compression or "no"
        return f"Kafka {self.bootstrap} ({codec} compression), topics {', '.join(self.topics)}"
