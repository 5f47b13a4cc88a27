"""The gateway against the real broker: `python -m gateway` in a subprocess, clients over HTTP."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_gateway_helpers import (
    GatewayProcess,
    SseClient,
    SseEvent,
    catalog_entry,
    create_topics,
    delete_topics,
    publish,
    wait_for,
)

pytestmark = [
    pytest.mark.kafka,
    # kafka-python 3.0.12 loads its protocol schemas with deprecated importlib.resources calls
    pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning"),
]

STREAMS = ["arrive", "resume", "resume_b", "replay", "gap", "slow", "dups", "txn", "backfill"]
BUFFER_ROWS = 20
REPLAY_MAX = 25
BACKFILL_ROWS = 7


def rows(ticker: str, first: int, count: int, **extra: object) -> list[dict]:
    # Flink's SQL timestamp form without a zone: the gateway must read it as UTC.
    return [
        {
            "ticker": ticker,
            "window_end": f"2026-11-26 07:{(first + i) % 60:02d}:00.000",
            "seq": first + i,
            **extra,
        }
        for i in range(count)
    ]


def seqs(events: list[SseEvent]) -> list[int]:
    return [e.json()["seq"] for e in events]


@pytest.fixture(scope="module")
def gw(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    names = create_topics(kafka_bootstrap, len(STREAMS) + 1)
    topics = dict(zip([*STREAMS, "dups_live"], names, strict=True))
    outputs = [catalog_entry(s, topics[s]) for s in STREAMS if s != "dups"]
    outputs.append(
        catalog_entry(
            "dups",
            topics["dups"],
            live_topic=topics["dups_live"],
            columns=["event_id", "ticker", "ts", "seq"],
        )
    )
    catalog = tmp_path_factory.mktemp("gateway") / "catalog.json"
    catalog.write_text(json.dumps({"outputs": outputs}))
    # Written before the gateway starts: it must read them back (backfill).
    publish(kafka_bootstrap, topics["backfill"], rows("BKFL", 0, BACKFILL_ROWS))
    gateway = GatewayProcess(
        kafka_bootstrap, catalog, catalog.parent,
        "--heartbeat", "1", "--buffer-rows", str(BUFFER_ROWS), "--replay-max", str(REPLAY_MAX),
        "--client-queue", "2000", "--send-timeout", "2",
    ).start()  # fmt: skip
    try:
        gateway.wait_live(STREAMS)
        yield gateway, topics
    finally:
        gateway.stop()
        delete_topics(kafka_bootstrap, names)


def subscribe(gateway: GatewayProcess, path: str, last_event_id: str | None = None) -> SseClient:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    client = SseClient(gateway.url + path, headers)
    assert client.status == 200
    return client


def test_sse_when_rows_published_then_client_gets_its_ticker_in_order_with_utc_times(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    client = subscribe(gateway, "/api/streams/arrive/events?ticker=ARRV")
    try:
        (ready,) = client.take(1)
        assert ready.event == "ready" and ready.id.startswith("arrive:")
        publish(kafka_bootstrap, topics["arrive"], rows("OTHR", 0, 2) + rows("ARRV", 0, 5))
        got = client.take(5)
        assert [e.event for e in got] == ["arrive"] * 5
        assert seqs(got) == [0, 1, 2, 3, 4]
        assert {e.json()["ticker"] for e in got} == {"ARRV"}
        assert got[0].json()["window_end"] == "2026-11-26T07:00:00.000Z"
        heartbeat = client.take(1, skip=())[0]
        assert (
            heartbeat.event == "heartbeat" and heartbeat.id == got[-1].id
        )  # no id: resume point kept
    finally:
        client.close()


def test_sse_when_reconnecting_with_last_event_id_then_exactly_the_missed_rows(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    path = "/api/streams/resume/events?ticker=RSME"
    first = subscribe(gateway, path)
    try:
        first.take(1)  # ready
        publish(kafka_bootstrap, topics["resume"], rows("RSME", 0, 10))
        read = first.take(4)
    finally:
        first.close()
    assert seqs(read) == [0, 1, 2, 3]
    publish(kafka_bootstrap, topics["resume"], rows("RSME", 10, 6))
    second = subscribe(gateway, path, last_event_id=read[-1].id)
    try:
        assert second.take(1)[0].id == read[-1].id  # ready repeats the resume point
        assert seqs(second.take(12)) == list(range(4, 16))
        assert second.rows_within(1.5) == []
    finally:
        second.close()


def test_sse_when_one_connection_carries_two_streams_then_resume_is_per_stream(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    path = "/api/events?streams=resume,resume_b&ticker=MULT"
    first = subscribe(gateway, path)
    try:
        first.take(1)
        for start in range(0, 5):
            publish(kafka_bootstrap, topics["resume"], rows("MULT", start, 1))
            publish(kafka_bootstrap, topics["resume_b"], rows("MULT", 100 + start, 1))
        read = first.take(4)
    finally:
        first.close()
    publish(kafka_bootstrap, topics["resume"], rows("MULT", 5, 3))
    publish(kafka_bootstrap, topics["resume_b"], rows("MULT", 105, 3))
    assert "resume:" in read[-1].id and "resume_b:" in read[-1].id
    second = subscribe(gateway, path, last_event_id=read[-1].id)
    try:
        second.take(1)
        rest = second.take(12)
        assert second.rows_within(1.0) == []
    finally:
        second.close()
    by_stream = {
        name: [e.json()["seq"] for e in read + rest if e.event == name]
        for name in ("resume", "resume_b")
    }
    assert by_stream == {"resume": list(range(0, 8)), "resume_b": list(range(100, 108))}


def missed_rows(
    gateway, kafka_bootstrap: str, topics: dict[str, str], stream: str, ticker: str, count: int
) -> tuple[str, str]:
    """A client subscribes and leaves; then `count` rows arrive and the gateway ingests them.
    Returns the stream's events path and the Last-Event-ID the client would resume from."""
    path = f"/api/streams/{stream}/events?ticker={ticker}"
    first = subscribe(gateway, path)
    (ready,) = first.take(1)
    first.close()
    publish(kafka_bootstrap, topics[stream], rows(ticker, 0, count))
    wait_for(
        lambda: httpx.get(f"{gateway.url}/healthz").json()["streams"][stream]["records"] == count,
        10,
        f"{count} rows ingested",
    )
    return path, ready.id


def test_sse_when_resume_point_older_than_buffer_then_rows_read_back_from_kafka(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    path, resume_id = missed_rows(gateway, kafka_bootstrap, topics, "replay", "RPLY", 40)
    history = httpx.get(f"{gateway.url}/api/streams/replay?ticker=RPLY&limit=5000").json()
    assert [r["seq"] for r in history["rows"]] == list(
        range(40 - BUFFER_ROWS, 40)
    )  # memory is bounded
    resumed = subscribe(gateway, path, last_event_id=resume_id)
    try:
        resumed.take(1)
        assert seqs(resumed.take(40)) == list(range(40))
    finally:
        resumed.close()


def test_sse_when_missed_rows_exceed_replay_limit_then_gap_event_and_the_rest(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    path, resume_id = missed_rows(gateway, kafka_bootstrap, topics, "gap", "GAPS", 60)
    resumed = subscribe(gateway, path, last_event_id=resume_id)
    try:
        resumed.take(1)
        gap = resumed.take(1)[0]
        assert gap.event == "gap"
        # 40 rows are older than the buffer; only the last REPLAY_MAX of them are read back.
        assert gap.json()["to"] - gap.json()["from"] == 40 - REPLAY_MAX
        assert seqs(resumed.take(60 - 15)) == list(range(15, 60))
    finally:
        resumed.close()


def test_sse_when_a_client_stops_reading_then_it_is_dropped_and_others_keep_receiving(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    path = "/api/streams/slow/events?ticker=SLOW"
    frozen = socket.socket()
    frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    frozen.connect(("127.0.0.1", gateway.port))
    frozen.sendall(
        f"GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    normal = subscribe(gateway, path)
    try:
        wait_for(
            lambda: httpx.get(f"{gateway.url}/healthz").json()["streams"]["slow"]["clients"] == 2,
            10,
            "two clients",
        )
        dropped_before = httpx.get(f"{gateway.url}/healthz").json()["dropped_clients"]
        normal.take(1)
        total, pad = 3000, "x" * 2000  # ~6 MB: far more than the socket buffers hold
        for start in range(0, total, 500):
            publish(kafka_bootstrap, topics["slow"], rows("SLOW", start, 500, pad=pad))
        assert seqs(normal.take(total, timeout_s=30)) == list(range(total))

        health = wait_for(
            lambda: (
                (h := httpx.get(f"{gateway.url}/healthz").json())["streams"]["slow"]["clients"] == 1
                and h
            ),
            15,
            "the frozen client to be dropped",
        )
        assert health["dropped_clients"] == dropped_before + 1
        # The server closed the frozen connection: reading it now ends in EOF.
        frozen.settimeout(10)
        received = 0
        while chunk := frozen.recv(1 << 20):
            received += len(chunk)
        assert 0 < received < total * len(pad)
    finally:
        normal.close()
        frozen.close()


def test_sse_when_live_topic_repeats_events_then_each_event_id_arrives_once(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    client = subscribe(gateway, "/api/streams/dups/events?ticker=DUPS")
    try:
        client.take(1)
        ids = ["a", "b", "a", "c", "b", "d", "d"]
        publish(
            kafka_bootstrap,
            topics["dups_live"],
            [
                {"event_id": i, "ticker": "DUPS", "ts": 1764140460000 + n, "seq": n}
                for n, i in enumerate(ids)
            ],
        )
        # Rows on the exactly-once topic are not read: the stream has a live copy.
        publish(
            kafka_bootstrap,
            topics["dups"],
            [{"event_id": "z", "ticker": "DUPS", "ts": 1764140460000, "seq": 99}],
        )
        got = client.take(4)
        assert [e.json()["event_id"] for e in got] == ["a", "b", "c", "d"]
        assert got[0].json()["ts"] == "2025-11-26T07:01:00.000Z"  # epoch ms arrives as ISO-8601 UTC
        assert client.rows_within(1.0) == []
    finally:
        client.close()
    history = httpx.get(f"{gateway.url}/api/streams/dups?ticker=DUPS").json()
    assert [r["event_id"] for r in history["rows"]] == ["a", "b", "c", "d"]
    assert httpx.get(f"{gateway.url}/healthz").json()["streams"]["dups"]["duplicates_dropped"] == 3


def test_sse_when_a_transaction_aborts_then_its_rows_never_reach_clients(
    gw, kafka_bootstrap: str
) -> None:
    from kafka import KafkaProducer

    gateway, topics = gw
    client = subscribe(gateway, "/api/streams/txn/events?ticker=TXNS")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id="gateway-test-txn")
    try:
        client.take(1)
        producer.init_transactions()
        for keep, seq in ((False, 0), (True, 1)):
            producer.begin_transaction()
            producer.send(
                topics["txn"], key=b"TXNS", value=json.dumps(rows("TXNS", seq, 1)[0]).encode()
            )
            producer.flush()
            (producer.commit_transaction if keep else producer.abort_transaction)()
        assert seqs(client.take(1)) == [1]
        assert client.rows_within(1.0) == []
    finally:
        producer.close(5)
        client.close()


def test_history_when_gateway_starts_then_rows_already_in_kafka_are_served(
    gw, kafka_bootstrap: str
) -> None:
    gateway, topics = gw
    history = httpx.get(f"{gateway.url}/api/streams/backfill?ticker=BKFL&limit=3").json()
    assert [r["seq"] for r in history["rows"]] == [4, 5, 6]
    assert history["cursor"].startswith("backfill:")
    # The cursor of a history answer resumes right after it (what the page does).
    client = subscribe(
        gateway, f"/api/streams/backfill/events?ticker=BKFL&last_event_id={history['cursor']}"
    )
    try:
        client.take(1)
        publish(kafka_bootstrap, topics["backfill"], rows("BKFL", BACKFILL_ROWS, 2))
        assert seqs(client.take(2)) == [7, 8]
    finally:
        client.close()


def test_healthz_when_broker_up_then_200_with_lag_per_stream(gw) -> None:
    gateway, _ = gw
    health = httpx.get(f"{gateway.url}/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["broker"]["reachable"] is True
    assert set(STREAMS) <= set(body["streams"])
    assert all(
        isinstance(s["lag"], int) and s["state"] == "live"
        for s in body["streams"].values()
        if s["topic"] != "moex.market_status"
    )


def test_healthz_when_broker_unreachable_then_503_and_api_still_answers(
    tmp_path: Path,
) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"outputs": [catalog_entry("arrive", "test.none")]}))
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
    gateway = GatewayProcess(dead, catalog, tmp_path).start()
    try:
        started = time.monotonic()
        health = httpx.get(f"{gateway.url}/healthz", timeout=5)
        assert time.monotonic() - started < 2
        assert health.status_code == 503
        assert health.json()["broker"]["reachable"] is False
        assert httpx.get(f"{gateway.url}/api/streams").status_code == 200
        assert httpx.get(f"{gateway.url}/api/streams/arrive?ticker=SBER").json()["rows"] == []
    finally:
        gateway.stop()
