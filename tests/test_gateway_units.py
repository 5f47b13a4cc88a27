"""Pure parts of the gateway: event ids, instants, record parsing, the catalog, the hub's bookkeeping."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import cursor, frames
from gateway.catalog import load_catalog, spec_from_entry
from gateway.hub import Hub, ReplayRange, Subscription
from gateway.rows import Entry, parse_instant, to_entry
from gateway.settings import Settings, parse_args
from gateway.sse import event_stream

SPEC = spec_from_entry(
    {
        "name": "signals",
        "topic": "moex.signals",
        "live_topic": "moex.signals_live",
        "dedup_key": "event_id",
        "columns": [
            {"name": "event_id", "type": "STRING"},
            {"name": "ticker", "type": "STRING"},
            {"name": "ts", "type": "TIMESTAMP_LTZ(3)"},
        ],
    }
)


def entry(ticker: str, offset: int, partition: int = 0, event_id: str | None = None) -> Entry:
    row = {
        "ticker": ticker,
        "ts": "2026-11-26T07:01:00Z",
        "event_id": event_id or f"{partition}-{offset}",
    }
    parsed = to_entry(SPEC, partition, offset, ticker.encode(), json.dumps(row).encode())
    assert parsed is not None
    return parsed


CANDLES = spec_from_entry(
    {
        "name": "candles",
        "topic": "moex.candles",
        "columns": [
            {"name": "ticker", "type": "STRING"},
            {"name": "ts", "type": "TIMESTAMP_LTZ(3)"},
        ],
    }
)


def hub(buffer_rows: int = 3, client_queue: int = 10) -> Hub:
    return Hub(
        Settings(bootstrap=None, buffer_rows=buffer_rows, client_queue=client_queue),
        {"signals": SPEC, "candles": CANDLES},
    )


def events(chunk: bytes) -> list[dict[str, str]]:
    """The fields of each SSE event in a chunk, as a browser's EventSource splits them."""
    parsed = []
    for block in chunk.decode().split("\n\n"):
        if block:
            parsed.append(dict(line.split(": ", 1) for line in block.split("\n")))
    return parsed


def ids(chunk: bytes) -> list[str]:
    return [e["id"] for e in events(chunk)]


def offsets(chunk: bytes) -> list[tuple[str, int]]:
    return [(e["event"], json.loads(e["data"])["seq"]) for e in events(chunk)]


def row(ticker: str, offset: int, partition: int, spec=SPEC) -> Entry:
    """An entry whose JSON says where it came from (seq = offset), for checking what arrives."""
    data = json.dumps({"ticker": ticker, "seq": offset, "event_id": f"{partition}-{offset}"})
    parsed = to_entry(spec, partition, offset, ticker.encode(), data.encode())
    assert parsed is not None
    return parsed


async def take(stream: AsyncIterator[bytes], count: int) -> list[bytes]:
    return [await anext(stream) for _ in range(count)]


def run_clients(
    state_hub: Hub, subscriptions: list[Subscription], steps: list
) -> list[list[bytes]]:
    """Drive each client's event stream: every step is ingest arguments, then chunks per client."""

    async def main() -> list[list[bytes]]:
        streams = [event_stream(state_hub, s) for s in subscriptions]
        received: list[list[bytes]] = [[] for _ in streams]
        try:
            for ingest_args, counts in steps:
                if ingest_args is not None:
                    state_hub.ingest(*ingest_args)
                for index, count in enumerate(counts):
                    received[index] += await take(streams[index], count)
        finally:
            for stream in streams:
                await stream.aclose()
        return received

    return asyncio.run(main())


# --- event ids ---

_segments = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=8).map(lambda v: dict(enumerate(v))),
    max_size=6,
)


@given(_segments)
def test_cursor_when_encoded_then_decodes_to_the_same_positions(positions: dict) -> None:
    assert cursor.decode(cursor.encode(positions)) == positions


def test_cursor_when_example_given_then_compact_text() -> None:
    assert (
        cursor.encode({"candles_1m": {0: 0, 1: 418, 2: 7}, "signals": {0: 3}})
        == "candles_1m:0.418.7,signals:3"
    )


@pytest.mark.parametrize(
    "text",
    [
        "candles_1m",
        "candles_1m:",
        "Candles:1",
        "a:1,a:2",
        "a:1.-2",
        "a:1;b:2",
        "a:99999999999999999999",
        "a:" + ".".join(["1"] * 300),
    ],
)
def test_cursor_when_malformed_then_error_says_why(text: str) -> None:
    with pytest.raises(cursor.CursorError):
        cursor.decode(text)


# --- instants ---


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-26T07:01:00Z",
        "2026-11-26T07:01:00.000Z",
        "2026-11-26 07:01:00.000",
        "2026-11-26T10:01:00+03:00",
        "2026-11-26 07:01:00.000000000",
        1795676460000,
    ],
)
def test_instant_when_any_accepted_form_then_same_utc_moment(value: object) -> None:
    moment = parse_instant(value)
    assert moment is not None and moment.isoformat() == "2026-11-26T07:01:00+00:00"


@pytest.mark.parametrize(
    "value", ["yesterday", "", "2026-13-01T00:00:00Z", True, float("nan"), 10**30, None, [1]]
)
def test_instant_when_unparseable_then_none(value: object) -> None:
    assert parse_instant(value) is None


def test_entry_when_row_has_nan_or_huge_numbers_then_json_stays_valid_for_browsers() -> None:
    parsed = to_entry(
        SPEC,
        0,
        5,
        b"SBER",
        b'{"ticker": "SBER", "ts": "2026-11-26 07:01:00", "price": NaN, "x": 1e999}',
    )
    assert parsed is not None
    assert json.loads(parsed.data) == {
        "ticker": "SBER",
        "ts": "2026-11-26T07:01:00.000Z",
        "price": None,
        "x": None,
    }


@pytest.mark.parametrize("value", [None, b"not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_entry_when_value_not_a_json_object_then_skipped(value: bytes | None) -> None:
    assert to_entry(SPEC, 0, 0, b"SBER", value) is None


def test_entry_when_row_lacks_ticker_then_key_is_the_ticker() -> None:
    parsed = to_entry(SPEC, 0, 0, b"GAZP", b'{"event_id": "e1"}')
    assert parsed is not None and (parsed.ticker, parsed.event_id) == ("GAZP", "e1")


# --- catalog and settings ---


def test_catalog_when_file_missing_then_market_status_only(tmp_path: Path) -> None:
    assert list(load_catalog(tmp_path / "absent.json")) == ["market_status"]


def test_catalog_when_entry_bad_then_skipped_and_live_topic_without_dedup_key_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {
                "outputs": [
                    {"name": "Bad Name", "topic": "t"},
                    {"name": "ok", "topic": "moex.ok", "live_topic": "moex.ok_live"},
                ]
            }
        )
    )
    specs = load_catalog(path)
    assert sorted(specs) == ["market_status", "ok"]
    assert specs["ok"].source_topic == "moex.ok"


def test_settings_when_environment_set_then_defaults_follow_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "8123")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    monkeypatch.setenv("GATEWAY_TOKEN", "t0k")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://a.example, https://b.example")
    settings = parse_args([])
    assert (settings.host, settings.port, settings.bootstrap, settings.token) == (
        "127.0.0.1",
        8123,
        "10.0.0.1:9092",
        "t0k",
    )
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert parse_args(["--port", "9000"]).port == 9000


# --- the hub ---


def test_hub_when_resume_point_evicted_then_kafka_range_then_memory_rows() -> None:
    state_hub = hub(buffer_rows=3)
    state_hub.on_assigned("signals", {0: 10, 1: 0}, {0: 10, 1: 0})
    state_hub.ingest("signals", [entry("SBER", o) for o in range(10, 16)], {0: 16})
    # SBER rows 10..12 were evicted from memory; 13..15 remain.
    plan = state_hub.subscribe(["signals"], "SBER", {"signals": {0: 11, 1: 0}})
    assert plan.replay == [ReplayRange("signals", 0, 11, 13)]
    assert [e.offset for _, e in plan.snapshot] == [13, 14, 15]
    older = state_hub.subscribe(["signals"], "SBER", {"signals": {0: 2, 1: 0}})
    assert older.replay == [ReplayRange("signals", 0, 2, 13)]  # before this process started, too


def test_hub_when_resume_point_in_memory_then_no_kafka_read_and_no_repeat() -> None:
    state_hub = hub(buffer_rows=10)
    state_hub.on_assigned("signals", {0: 0}, {0: 0})
    state_hub.ingest("signals", [entry("SBER", o) for o in range(5)], {0: 5})
    plan = state_hub.subscribe(["signals"], "SBER", {"signals": {0: 3}})
    assert plan.replay == [] and [e.offset for _, e in plan.snapshot] == [3, 4]
    assert plan.subscriber.positions == {"signals": {0: 3}}


def test_hub_when_live_topic_repeats_an_event_id_then_kept_once() -> None:
    state_hub = hub(buffer_rows=10)
    state_hub.on_assigned("signals", {0: 0}, {0: 0})
    state_hub.ingest(
        "signals",
        [
            entry("SBER", 0, event_id="a"),
            entry("SBER", 1, event_id="b"),
            entry("SBER", 2, event_id="a"),
        ],
        {0: 3},
    )
    rows, cursor_text = state_hub.history("signals", "SBER", 10)
    assert [r.event_id for r in rows] == ["a", "b"] and cursor_text == "signals:3"
    assert state_hub.streams["signals"].duplicates == 1


def test_hub_when_subscriber_queue_overflows_then_it_alone_is_closed() -> None:
    state_hub = hub(buffer_rows=100, client_queue=10)
    state_hub.on_assigned("signals", {0: 0}, {0: 0})
    slow = state_hub.subscribe(["signals"], "SBER", None).subscriber
    other = state_hub.subscribe(["signals"], "GAZP", None).subscriber
    state_hub.ingest(
        "signals", [entry("SBER", o) for o in range(11)] + [entry("GAZP", 11)], {0: 12}
    )
    assert slow.closed_reason is not None and "slow" in slow.closed_reason and not slow.pending
    assert other.closed_reason is None and len(other.pending) == 1
    assert state_hub.dropped_clients == 1


def test_hub_when_many_clients_get_a_row_then_it_is_encoded_once_and_the_bytes_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded = []

    def counting(*args, **kwargs) -> str:
        encoded.append(args)
        return original(*args, **kwargs)

    original = frames.encode_event
    monkeypatch.setattr(frames, "encode_event", counting)
    state_hub = hub(buffer_rows=10, client_queue=100)
    state_hub.on_assigned("signals", {0: 0, 1: 0}, {0: 0, 1: 0})
    subs = [state_hub.subscribe(["signals"], t, None).subscriber for t in (None, "SBER", "SBER")]
    other = state_hub.subscribe(["signals"], "GAZP", None).subscriber
    state_hub.ingest("signals", [row("SBER", 0, 0), row("SBER", 1, 1)], {0: 1, 1: 2})

    assert len(encoded) == 2  # one per row, not one per row and client
    first, second = subs[0].pending
    assert all(list(s.pending) == [first, second] for s in subs) and not other.pending
    assert subs[1].frame_bytes(first) is subs[2].frame_bytes(first)
    assert ids(subs[0].frame_bytes(second)) == ["signals:1.2"]
    state_hub.ingest("signals", [row("*", 2, 0)], {0: 3})  # a market-wide row: every client
    assert all(len(s.pending) == 3 for s in subs) and len(other.pending) == 1


def test_sse_when_resumed_then_own_ids_until_live_then_shared_frames_with_stream_positions() -> (
    None
):
    state_hub = hub(buffer_rows=10, client_queue=100)
    state_hub.on_assigned("signals", {0: 0, 1: 0}, {0: 0, 1: 0})
    state_hub.ingest(
        "signals",
        [row("SBER", 0, 0), row("GAZP", 0, 1), row("SBER", 1, 1), row("GAZP", 1, 0)],
        {0: 2, 1: 2},
    )
    live = state_hub.subscribe(["signals"], None, None)
    resumed = state_hub.subscribe(["signals"], "SBER", {"signals": {0: 1, 1: 0}})
    live_chunks, resumed_chunks = run_clients(
        state_hub,
        [live, resumed],
        [
            (None, [1, 2]),  # ready; ready and the resume from memory
            (("signals", [row("GAZP", 2, 0)], {0: 3}), [1, 0]),
            (("signals", [row("SBER", 2, 1)], {1: 3}), [1, 1]),
        ],
    )
    assert ids(live_chunks[0]) == ["signals:2.2"] and ids(resumed_chunks[0]) == ["signals:1.0"]
    # The resume: SBER offset 1 of partition 1, with this client's own position after it.
    assert offsets(resumed_chunks[1]) == [("signals", 1)]
    assert ids(resumed_chunks[1]) == ["signals:1.2"]
    # Live: the stream's position after each row, the same bytes for both clients.
    assert ids(live_chunks[1]) == ["signals:3.2"] and ids(live_chunks[2]) == ["signals:3.3"]
    assert resumed_chunks[2] is live_chunks[2]

    # Resuming from a live id (it counts GAZP rows too) gives exactly the SBER rows after it.
    state_hub.ingest("signals", [row("SBER", 3, 0), row("GAZP", 3, 1)], {0: 4, 1: 4})
    again = state_hub.subscribe(["signals"], "SBER", cursor.decode(ids(resumed_chunks[2])[-1]))
    assert again.replay == [] and [(e.partition, e.offset) for _, e in again.snapshot] == [(0, 3)]


def test_sse_when_one_client_has_two_streams_then_id_joins_each_streams_latest_segment() -> None:
    state_hub = hub(buffer_rows=10, client_queue=100)
    state_hub.on_assigned("signals", {0: 5}, {0: 5})
    state_hub.on_assigned("candles", {0: 0, 1: 7}, {0: 0, 1: 7})
    both = state_hub.subscribe(["signals", "candles"], None, None)
    single = state_hub.subscribe(["candles"], None, None)
    both_chunks, single_chunks = run_clients(
        state_hub,
        [both, single],
        [
            (None, [1, 1]),
            (("candles", [row("SBER", 7, 1, CANDLES)], {1: 8}), [1, 1]),
            (("signals", [row("SBER", 5, 0)], {0: 6}), [1, 0]),
            (("candles", [row("SBER", 0, 0, CANDLES)], {0: 1}), [1, 1]),
        ],
    )
    assert ids(both_chunks[0]) == ["signals:5,candles:0.7"]
    assert [ids(c)[0] for c in both_chunks[1:]] == [
        "signals:5,candles:0.8",
        "signals:6,candles:0.8",
        "signals:6,candles:1.8",
    ]
    assert [ids(c)[0] for c in single_chunks[1:]] == ["candles:0.8", "candles:1.8"]
    # Only the id line differs: the event and its data are the shared frame's bytes.
    assert both_chunks[3].endswith(single_chunks[2].split(b"\n", 1)[1])


def test_sse_when_several_rows_wait_then_one_write_carries_them_all() -> None:
    state_hub = hub(buffer_rows=10, client_queue=100)
    state_hub.on_assigned("signals", {0: 0}, {0: 0})
    live = state_hub.subscribe(["signals"], None, None)
    (chunks,) = run_clients(
        state_hub,
        [live],
        [
            (None, [1]),
            (("signals", [row("SBER", o, 0) for o in range(3)], {0: 3}), [1]),
        ],
    )
    assert offsets(chunks[1]) == [("signals", 0), ("signals", 1), ("signals", 2)]
    assert ids(chunks[1]) == ["signals:1", "signals:2", "signals:3"]


def test_hub_when_a_write_waits_past_the_send_timeout_then_the_client_is_stalled() -> None:
    state_hub = hub()
    stuck = state_hub.subscribe(["signals"], None, None).subscriber
    writing = state_hub.subscribe(["signals", "candles"], None, None).subscriber
    stuck.sending_since = time.monotonic() - 5
    writing.sending_since = time.monotonic()
    assert state_hub.stalled(timeout_s=2) == [stuck]


def _strict_json(text: str | bytes) -> object:
    """json.loads as a browser's JSON.parse: NaN and Infinity are not JSON."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.one_of(st.none(), st.binary(max_size=300)), st.one_of(st.none(), st.binary(max_size=20)))
def test_entry_when_any_bytes_arrive_then_skipped_or_valid_json_never_an_exception(
    value: bytes | None, key: bytes | None
) -> None:
    """Whatever a Kafka record holds, decoding it never raises; what it keeps is strict JSON."""
    entry = to_entry(SPEC, 0, 7, key, value)
    if entry is not None:
        assert isinstance(_strict_json(entry.data), dict)


@given(st.dictionaries(st.text(max_size=12), _json_values, max_size=8), st.text(max_size=8))
def test_entry_when_any_json_object_arrives_then_kept_as_strict_json_with_a_ticker(
    row: dict, ticker: str
) -> None:
    """Every JSON object is delivered (NaN/Infinity become null); its ticker is a string."""
    row = {**row, "ticker": ticker}
    value = json.dumps(row).encode()  # Python writes NaN/Infinity as Kafka producers may
    entry = to_entry(SPEC, 1, 9, b"KEY", value)
    assert entry is not None
    decoded = _strict_json(entry.data)
    assert isinstance(decoded, dict) and decoded["ticker"] == ticker
    assert isinstance(entry.ticker, str) and (entry.partition, entry.offset) == (1, 9)
