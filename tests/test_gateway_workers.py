"""Several gateway processes: a client that reconnects to another worker resumes there without a
gap or a repeat (event ids are Kafka positions, not a worker's own counters), and
`--workers 2` really spreads connections over two processes sharing the port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway import cursor
from gateway.hub import Hub
from gateway.settings import Settings, auto_workers
from tests.test_gateway_helpers import (
    GatewayProcess,
    SseClient,
    catalog_entry,
    create_topics,
    delete_topics,
    publish,
    wait_for,
)
from tests.test_gateway_kafka import rows, seqs
from tests.test_gateway_units import CANDLES, row

pytestmark = [
    pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning"),
]


def worker_pids(gateway: GatewayProcess, workers: int, attempts: int = 60) -> set[int]:
    """The pids that answer /healthz on the gateway's port, one new connection per request."""
    pids = set()
    for _ in range(attempts):
        pids.add(httpx.get(f"{gateway.url}/healthz", timeout=5).json()["pid"])
        if len(pids) == workers:
            break
    return pids


@pytest.fixture
def topic_and_catalog(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    (topic,) = create_topics(kafka_bootstrap, 1)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"outputs": [catalog_entry("quotes", topic)]}))
    try:
        yield topic, catalog
    finally:
        delete_topics(kafka_bootstrap, [topic])


@pytest.mark.kafka
def test_gateway_when_a_client_resumes_on_another_worker_then_no_gap_no_duplicate(
    kafka_bootstrap: str, tmp_path: Path, topic_and_catalog: tuple[str, Path]
) -> None:
    """Two workers with the same settings on two ports (so the test picks the worker): the
    client reads part of the rows from the first, leaves, rows go on arriving, and it comes back
    to the second with its last id. The second keeps only 10 rows per ticker, so the resume reads
    the older ones back from Kafka and the newer ones from memory."""
    topic, catalog = topic_and_catalog
    args = ("--buffer-rows", "10", "--heartbeat", "1")
    first = GatewayProcess(kafka_bootstrap, catalog, tmp_path, *args)
    second = GatewayProcess(kafka_bootstrap, catalog, tmp_path, *args)
    client = None
    try:
        for gateway in (first, second):
            gateway.start()
            gateway.wait_live(["quotes"])
        path = "/api/events?streams=quotes&ticker=SBER"
        client = SseClient(first.url + path)
        assert client.take(1)[0].event == "ready"
        publish(kafka_bootstrap, topic, rows("SBER", 0, 40) + rows("GAZP", 0, 20))
        got = client.take(25)
        client.close()
        assert seqs(got) == list(range(25))
        publish(kafka_bootstrap, topic, rows("SBER", 40, 30) + rows("GAZP", 20, 20))
        client = SseClient(second.url + path, {"Last-Event-ID": got[-1].id})
        ready = client.take(1)[0]
        assert ready.event == "ready" and ready.id == got[-1].id
        rest = client.take(70 - 25, timeout_s=30)
        assert seqs(rest) == list(range(25, 70))
        assert client.rows_within(1.5) == []  # nothing after the last row: no repeat
        # Every id the second worker gave is a position the first one can resume from too.
        assert cursor.decode(rest[-1].id)["quotes"]
    finally:
        if client is not None:
            client.close()
        first.stop()
        second.stop()


def test_hub_when_resume_id_is_ahead_of_this_worker_then_it_waits_and_repeats_nothing() -> None:
    """A worker one poll behind the worker that gave the id: it waits until it has read that
    far, and the client gets only what comes after its id."""

    async def main() -> list[int]:
        hub = Hub(Settings(bootstrap=None, buffer_rows=100), {"candles": CANDLES})
        hub.on_assigned("candles", {0: 0}, {0: 0})
        hub.ingest("candles", [row("SBER", o, 0, CANDLES) for o in range(5)], {0: 5})
        ahead = {"candles": {0: 8}}  # the other worker had sent rows 0..7
        waiting = asyncio.create_task(hub.wait_caught_up(ahead, timeout_s=5))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        hub.ingest("candles", [row("SBER", o, 0, CANDLES) for o in range(5, 10)], {0: 10})
        await asyncio.wait_for(waiting, 2)
        subscription = hub.subscribe(["candles"], "SBER", ahead)
        return [entry.offset for _, entry in subscription.snapshot]

    assert asyncio.run(main()) == [8, 9]


def test_settings_when_workers_auto_then_half_the_cores_at_least_one() -> None:
    assert [auto_workers(c) for c in (1, 2, 4, 8)] == [1, 1, 2, 4]


@pytest.mark.kafka
def test_gateway_when_workers_share_the_port_then_several_processes_serve_it(
    kafka_bootstrap: str, tmp_path: Path, topic_and_catalog: tuple[str, Path]
) -> None:
    topic, catalog = topic_and_catalog
    gateway = GatewayProcess(kafka_bootstrap, catalog, tmp_path, "--workers", "2")
    clients: list[SseClient] = []
    try:
        gateway.start()
        pids = worker_pids(gateway, 2)
        assert gateway.process is not None
        assert len(pids) == 2 and gateway.process.pid not in pids, pids
        wait_for(
            lambda: all(
                httpx.get(f"{gateway.url}/healthz").json()["streams"]["quotes"]["state"] == "live"
                for _ in range(6)
            ),
            30,
            "both workers live",
        )
        # Connections spread over both workers, and each worker delivers every row itself.
        clients = [SseClient(f"{gateway.url}/api/events?streams=quotes") for _ in range(16)]
        for client in clients:
            assert client.take(1)[0].event == "ready"
        served = {}
        wait_for(
            lambda: (
                served.update(
                    {(h := httpx.get(f"{gateway.url}/healthz").json())["pid"]: h["clients"]}
                )
                or (len(served) == 2 and sum(served.values()) == len(clients))
            ),
            20,
            "clients counted on both workers",
        )
        assert all(count > 0 for count in served.values()), served
        publish(kafka_bootstrap, topic, rows("SBER", 0, 30))
        for client in clients:
            assert seqs(client.take(30)) == list(range(30))
    finally:
        for client in clients:
            client.close()
        gateway.stop()
