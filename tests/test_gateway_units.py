"""Pure parts of the gateway: event ids, instants, record parsing, the catalog, the hub's bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import cursor
from gateway.catalog import load_catalog, spec_from_entry
from gateway.hub import Hub, ReplayRange
from gateway.rows import Entry, parse_instant, to_entry
from gateway.settings import Settings, parse_args

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


def hub(buffer_rows: int = 3, client_queue: int = 10) -> Hub:
    return Hub(
        Settings(bootstrap=None, buffer_rows=buffer_rows, client_queue=client_queue),
        {"signals": SPEC},
    )


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
