"""Replay of JSONL, CSV and ISS files through the CLI into --out files; pacing; bad input."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.cli import main
from producer.records import Reject
from producer.replay import ReplayError, read_csv, read_jsonl, replay

FIXTURES = Path(__file__).parent / "fixtures" / "iss"
QUIET = ["--stats-every", "0"]


def run_cli(*argv: str) -> int:
    return main([*argv, *QUIET])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_replay_csv_when_good_and_bad_lines_then_trades_and_dlq_with_line_numbers(
    tmp_path: Path,
) -> None:
    source = tmp_path / "ticks.csv"
    source.write_bytes(
        b"ticker,ts,price,qty,side,trade_id\n"
        b"SBER,2026-11-26T07:00:00.123Z,285.43,10,B,1001\n"
        b"SBER,2026-11-26T07:00:01.000Z,285.437,10,B,1002\n"
        b"GAZP,1795676401500,128.3,5,S,1003\n"
        b"\n"
        b"AAPL,1795676402000,190.00,1,B,1004\n"
        b"SBER,2026-11-26 07:00:02,285.44,1,B,1005\n"
        b"SBER,1795676403000,285.44\n"
        b"SBER,1795676403000,285.44,-3,S,1006\n"
        b"SBER,1795676404000,\xff285.45,1,S,1007\n"
        b"LKOH,1795676405000,6800.5,2,S,1008\n"
    )
    out = tmp_path / "out"
    assert run_cli("replay", str(source), "--out", str(out)) == 0
    trades = read_lines(out / "trades.jsonl")
    assert [(t["trade_id"], t["price"]) for t in trades] == [
        (1001, 285.43),
        (1003, 128.3),
        (1008, 6800.5),
    ]
    assert trades[0]["ts"] == 1_795_676_400_123
    assert '"price":128.30,' in (out / "trades.jsonl").read_text()
    dlq = read_lines(out / "dlq.jsonl")
    assert [(d["source"].rsplit(":", 1)[-1], d["reason"]) for d in dlq] == [
        ("3", "price 285.437 not on tick grid 0.01"),
        ("6", "unknown ticker 'AAPL'"),
        ("7", "ts '2026-11-26 07:00:02' has no time zone (write Z for UTC)"),
        ("8", "expected 6 fields, got 3"),
        ("9", "qty -3 is not positive"),
        ("10", "line is not valid UTF-8"),
    ]
    assert dlq[0]["source"] == f"replay:{source}:3"
    assert dlq[0]["payload"] == "SBER,2026-11-26T07:00:01.000Z,285.437,10,B,1002"


def test_replay_csv_when_header_wrong_then_clear_error_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "ticks.csv"
    source.write_text("symbol,time,price\nSBER,1,2\n")
    assert run_cli("replay", str(source), "--out", str(tmp_path / "out")) == 2
    assert "CSV header lacks ticker, ts, qty, side, trade_id" in capsys.readouterr().err
    assert run_cli("replay", str(tmp_path / "missing.csv"), "--out", str(tmp_path)) == 2
    assert run_cli("replay", str(source.with_suffix(".txt")), "--format", "csv") == 2


def test_replay_folder_when_synthetic_output_replayed_then_same_files(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli("synthetic", "--seed", "5", "--max-events", "3000", "--out", str(first)) == 0
    assert run_cli("replay", str(first), "--out", str(second)) == 0
    for name in ("trades.jsonl", "orderbook.jsonl", "market_status.jsonl", "dlq.jsonl"):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name


def test_replay_when_trades_file_given_as_out_then_other_topics_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "demo" / "trades.jsonl"
    assert run_cli("synthetic", "--seed", "1", "--max-events", "100", "--out", str(out)) == 0
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == [
        "dlq.jsonl",
        "market_status.jsonl",
        "orderbook.jsonl",
        "trades.jsonl",
        "truth.jsonl",
    ]
    assert run_cli("replay", str(out), "--out", str(tmp_path / "again.jsonl")) == 0
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()


def test_replay_iss_when_list_of_responses_then_all_blocks_in_order(tmp_path: Path) -> None:
    recording = tmp_path / "session.json"
    docs = [
        json.loads((FIXTURES / name).read_text())
        for name in ("sber_marketdata.json", "sber_orderbook.json", "sber_trades_start0.json")
    ]
    recording.write_text(json.dumps(docs))
    out = tmp_path / "out"
    assert run_cli("replay", str(recording), "--out", str(out)) == 0
    assert [s["phase"] for s in read_lines(out / "market_status.jsonl")] == ["trading"]
    assert [b["seq"] for b in read_lines(out / "orderbook.jsonl")] == [20261125100004]
    assert len(read_lines(out / "trades.jsonl")) == 5


def test_replay_when_speed_given_then_recorded_pace_scaled(tmp_path: Path) -> None:
    source = tmp_path / "three.csv"
    source.write_text(
        "ticker,ts,price,qty,side,trade_id\n"
        "SBER,1795676400000,285.43,1,B,1\n"
        "SBER,1795676401000,285.43,1,B,2\n"
        "SBER,1795676402000,285.43,1,B,3\n"
    )
    started = time.monotonic()
    assert run_cli("replay", str(source), "--speed", "8", "--out", str(tmp_path / "a")) == 0
    assert time.monotonic() - started >= 2 / 8 * 0.9  # 2 s of recorded time at 8x
    started = time.monotonic()
    assert run_cli("replay", str(source), "--rate", "10", "--out", str(tmp_path / "b")) == 0
    assert time.monotonic() - started >= 0.25  # 3 events at 10/s: the 3rd at 0.3 s


def test_replay_when_max_events_then_stops_after_n_input_records(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = FIXTURES / "bad_trades.json"
    assert run_cli("replay", str(source), "--max-events", "3", "--out", str(out)) == 0
    assert len(read_lines(out / "dlq.jsonl")) == 3


# --- property tests: arbitrary files never crash a reader --------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | st.text(max_size=300).map(lambda s: s.encode("utf-8")))
def test_jsonl_and_csv_readers_when_arbitrary_bytes_then_records_rejects_or_clear_error(
    data: bytes,
) -> None:
    header = b"ticker,ts,price,qty,side,trade_id\n"
    cases = (
        ("x.jsonl", read_jsonl, data),
        ("x.csv", read_csv, data),
        ("y.csv", read_csv, header + data),
    )
    with tempfile.TemporaryDirectory() as folder:
        for name, reader, content in cases:
            path = Path(folder) / name
            path.write_bytes(content)
            try:
                items = list(reader(path, lambda: 1_795_676_400_000))
            except ReplayError as exc:  # only a file whose header is unusable
                assert name == "x.csv" and "header" in str(exc)
                continue
            for item in items:
                assert type(item) is not Reject or item.reason


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "SBER,1795676400000,285.43,10,B,1",
                "SBER,1795676400000,285.437,10,B,2",
                "GAZP,2026-11-26T07:00:00Z,128.3,1,S,3",
                ",,,,,",
                '"SBER","1795676400000","285.43","10","B","4"',
                'SBER,"unterminated',
                "x" * 50,
            ]
        )
        | st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
        max_size=8,
    )
)
def test_csv_reader_when_arbitrary_lines_then_one_output_per_line(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.csv"
        body = "\n".join(["ticker,ts,price,qty,side,trade_id", *lines]) + "\n"
        path.write_text(body, encoding="utf-8")
        items = list(replay(path, now_ms=lambda: 1_795_676_400_000))
        # Every line holding more than ASCII whitespace is a record or a reject, in order.
        assert len(items) == len([n for n in lines if n.encode("utf-8").strip()])
