"""Shared by the gateway and page tests: a gateway subprocess, an SSE reader, Kafka helpers.

No tests here; the file name keeps it among the gateway's test files.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stack.kafka import free_port
from stack.topics import create_plain_topics, delete_topics  # noqa: F401  (the gateway tests import delete_topics from here)
from tests.processes import Group, wait_for

# --- Kafka ---


def create_topics(bootstrap: str, count: int, partitions: int = 3) -> list[str]:
    """`count` fresh topics `test.gw.<id>` (delete_topics removes them)."""
    names = [f"test.gw.{uuid.uuid4().hex[:10]}" for _ in range(count)]
    create_plain_topics(bootstrap, dict.fromkeys(names, partitions))
    return names


def publish(bootstrap: str, topic: str, rows: Iterable[dict[str, Any]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    try:
        for row in rows:
            producer.send(
                topic, key=str(row.get("ticker", "")).encode(), value=json.dumps(row).encode()
            )
        producer.flush(30)
    finally:
        producer.close(5)


def catalog_entry(
    name: str, topic: str, live_topic: str | None = None, columns: list[str] | None = None
) -> dict:
    names = columns or ["ticker", "window_end", "seq", "pad"]
    types = {"window_end": "TIMESTAMP_LTZ(3)", "ts": "TIMESTAMP_LTZ(3)", "seq": "BIGINT"}
    return {
        "name": name,
        "topic": topic,
        "live_topic": live_topic,
        "file": f"sql/test/{name}.sql",
        "description": f"test stream {name}",
        "grain": ["ticker", "window_end"],
        "guarantee": "exactly-once",
        "dedup_key": "event_id" if live_topic else None,
        "columns": [{"name": c, "type": types.get(c, "STRING")} for c in names],
    }


# --- the gateway as users run it: `python -m gateway` ---


class GatewayProcess:
    def __init__(
        self,
        bootstrap: str,
        catalog: Path,
        log_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_dir / f"gateway-{self.port}-{time.monotonic_ns()}.log"
        self.command = [
            sys.executable, "-m", "gateway",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--bootstrap", bootstrap, "--catalog", str(catalog), *args,
        ]  # fmt: skip
        # Its own run dir: /healthz's `job` must not report a developer's running `make up`.
        self.group = Group(
            self.command, self.log_file, {"MOEX_RUN_DIR": str(log_dir), **(env or {})}
        )

    @property
    def process(self) -> subprocess.Popen | None:
        return self.group.process

    def start(self, ready_timeout_s: float = 30.0) -> GatewayProcess:
        self.group.start()

        def answering() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited {self.process.returncode}:\n{self.log()}")
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)

        wait_for(answering, ready_timeout_s, "the gateway to answer /healthz")
        return self

    def wait_live(self, streams: Iterable[str], timeout_s: float = 30.0) -> dict:
        """Until every stream's reader has caught up with its topic (backfill done)."""

        states: dict[str, str] = {}

        def live() -> dict | None:
            health = httpx.get(f"{self.url}/healthz", timeout=2).json()
            states.update({s: health["streams"][s]["state"] for s in streams})
            return health if set(states.values()) == {"live"} else None

        try:
            return wait_for(live, timeout_s, "every stream to be live")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; states: {states}\n{self.log()[-3000:]}") from None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def signal(self, signum: int) -> None:
        self.group.signal(signum)

    def stop(self) -> None:
        self.group.stop(15)  # SIGCONT (a test may have frozen it), SIGTERM, then SIGKILL


# --- an SSE client, parsing the wire format by the spec (not trusting our own encoder) ---


@dataclass
class SseEvent:
    event: str
    data: str
    id: str  # the last event id after this event, as a browser would keep it

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseClient:
    """Reads an event stream in a thread; `take()` gets parsed events with a deadline."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue = field(default_factory=queue.Queue)
    status: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._opened = threading.Event()
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._opened.wait(10):
            raise AssertionError(f"no answer from {self.url}")

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as response:
                self.status = response.status_code
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                self._opened.set()
                if response.status_code != 200:
                    response.read()
                    return
                last_id, name, data = "", "message", []
                for line in response.iter_lines():
                    if line == "":
                        if data:
                            self.events.put(SseEvent(name, "\n".join(data), last_id))
                        name, data = "message", []
                    elif line.startswith(":"):
                        continue
                    else:
                        key, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if key == "id":
                            last_id = value
                        elif key == "event":
                            name = value
                        elif key == "data":
                            data.append(value)
        except (httpx.HTTPError, OSError, RuntimeError):
            pass  # closed by close() or by the server
        finally:
            self._opened.set()
            self.ended.set()

    def take(
        self, count: int, timeout_s: float = 15.0, skip: tuple[str, ...] = ("heartbeat",)
    ) -> list[SseEvent]:
        """The next `count` events, leaving out the kinds in `skip`."""
        taken: list[SseEvent] = []
        deadline = time.monotonic() + timeout_s
        while len(taken) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"got {len(taken)} of {count} events from {self.url}: {[e.event for e in taken]}"
                )
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if event.event not in skip:
                taken.append(event)
        return taken

    def rows_within(self, seconds: float) -> list[SseEvent]:
        """Every event but heartbeats that arrives in the next `seconds`."""
        got = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if event.event != "heartbeat":
                got.append(event)
        return got

    def close(self) -> None:
        # Closing the client does not wake a thread blocked in recv(); shutting the socket does.
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._client.close()
        self._thread.join(5)
