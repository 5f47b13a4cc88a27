"""The gateway's resume guarantee under churn: clients drop their connection at random points
of a burst and reconnect with Last-Event-ID; each must end up with every row exactly once.

The gateway keeps only a few rows per ticker in memory (--buffer-rows 20), so most resumes read
the missed rows back from Kafka and the rest come from memory: both paths are exercised.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.test_gateway_helpers import (
    GatewayProcess,
    SseClient,
    catalog_entry,
    create_topics,
    delete_topics,
    wait_for,
)

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning"),
]

ROWS = 2000
CLIENTS = 5
TICKERS = ("SBER", "GAZP", "LKOH", "VTBR", "YDEX", "ROSN")
BURST_RATE = 500  # rows a second: the burst lasts about 4 s, reconnects fall inside it


class ChurningClient:
    """Reads /api/events in a thread; after a random number of rows it drops the connection
    (events already received but not yet read are lost with it, as in a browser tab that dies)
    and reconnects with the id of the last event it processed."""

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.rows: list[dict] = []
        self.gaps: list[dict] = []
        self.other_events: list[str] = []
        self.reconnects = 0
        self.resumed_from_ids: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.connection = SseClient(url)
        ready = self.connection.take(1)[0]
        assert ready.event == "ready", ready
        self.last_id = ready.id
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set() and len(self.rows) < ROWS:
                budget = self.rng.randint(1, 250)
                read = 0
                while read < budget and len(self.rows) < ROWS and not self.stop.is_set():
                    try:
                        (event,) = self.connection.take(1, timeout_s=1.0)
                    except AssertionError:
                        if self.connection.ended.is_set():
                            break  # the server ended the stream: reconnect
                        continue
                    if event.event == "burst":
                        self.rows.append(event.json())
                        read += 1
                    elif event.event == "gap":
                        self.gaps.append(event.json())
                    elif event.event not in ("ready", "heartbeat"):
                        self.other_events.append(event.event)
                    self.last_id = event.id
                if len(self.rows) >= ROWS or self.stop.is_set():
                    break
                self.connection.close()
                self.reconnects += 1
                self.resumed_from_ids.append(self.last_id)
                self.connection = SseClient(self.url, {"Last-Event-ID": self.last_id})
                assert self.connection.status == 200, self.connection.status
                ready = self.connection.take(1)[0]
                assert ready.event == "ready" and ready.id == self.last_id, (ready, self.last_id)
        except BaseException as exc:
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self._thread.join(15)
        self.connection.close()


def test_gateway_when_clients_reconnect_with_last_event_id_during_a_burst_then_no_gap_no_duplicate(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    (topic,) = create_topics(kafka_bootstrap, 1)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"outputs": [catalog_entry("burst", topic)]}))
    gateway = GatewayProcess(
        kafka_bootstrap, catalog, tmp_path, "--buffer-rows", "20", "--heartbeat", "1"
    )
    clients: list[ChurningClient] = []
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    try:
        gateway.start()
        gateway.wait_live(["burst"])
        url = f"{gateway.url}/api/events?streams=burst"
        clients = [ChurningClient(url, seed) for seed in range(CLIENTS)]
        started = time.monotonic()
        for seq in range(ROWS):
            ticker = TICKERS[seq % len(TICKERS)]
            row = {
                "ticker": ticker,
                "window_end": f"2026-11-26 07:00:{seq % 60:02d}.000",
                "seq": seq,
            }
            producer.send(topic, key=ticker.encode(), value=json.dumps(row).encode())
            ahead = started + (seq + 1) / BURST_RATE - time.monotonic()
            if ahead > 0.005:
                producer.flush(10)
                time.sleep(ahead)  # paces the burst (a rate, not a wait for a condition)
        producer.flush(30)

        def all_done() -> bool:
            failed = [c.error for c in clients if c.error is not None]
            assert not failed, failed
            return all(len(c.rows) >= ROWS for c in clients)

        try:
            wait_for(all_done, 90, f"{CLIENTS} clients to receive {ROWS} rows each", every_s=0.2)
        except AssertionError as exc:
            counts = [len(c.rows) for c in clients]
            raise AssertionError(
                f"{exc}; rows per client {counts}\n{gateway.log()[-3000:]}"
            ) from None
        problems = []
        for number, client in enumerate(clients):
            seqs = [row["seq"] for row in client.rows]
            duplicates = len(seqs) - len(set(seqs))
            missing = sorted(set(range(ROWS)) - set(seqs))
            by_ticker: dict[str, list[int]] = defaultdict(list)
            for row in client.rows:
                by_ticker[row["ticker"]].append(row["seq"])
            out_of_order = [t for t, s in by_ticker.items() if s != sorted(s)]
            if duplicates or missing or out_of_order or client.gaps or client.other_events:
                problems.append(
                    f"client {number} ({client.reconnects} reconnects): {duplicates} duplicates, "
                    f"{len(missing)} missing (first {missing[:5]}), out of order {out_of_order}, "
                    f"gaps {client.gaps[:3]}, other events {client.other_events[:5]}"
                )
        reconnects = [c.reconnects for c in clients]
        print(f"\nreconnects per client: {reconnects}; {time.monotonic() - started:.1f} s")
        assert not problems, "\n".join(problems)
        assert all(r >= 3 for r in reconnects), reconnects
    finally:
        for client in clients:
            client.close()
        producer.close(5)
        gateway.stop()
        delete_topics(kafka_bootstrap, [topic])
