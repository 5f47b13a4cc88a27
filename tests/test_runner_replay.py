"""`python -m runner replay`: inputs (JSONL or CSV, missing ones empty), outputs, summary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moex.paths import ROOT
from runner import plan_cache, replay
from runner.cli import main
from runner.replay import ReplayInputError, csv_trades_to_jsonl, prepare_input, sort_key

# "runner: 12 s: read trades 1,200/2,000, ...; written candles_1s 40, ...; 100 trades/s, ETA 8 s"
PROGRESS = re.compile(r"^runner: \d+ s: read trades .*; written .*; ")

CSV = """ticker,ts,price,qty,side,trade_id
SBER,2025-11-26T07:00:00.250Z,285.10,10,B,101
SBER,1764140400900,285.30,5,S,102
GAZP,2025-11-26T07:00:01.000Z,160.00,7,B,201
SBER,2025-11-26T07:01:05.000Z,285.00,1,B,103
"""


def test_csv_trades_when_converted_then_topic_payloads_with_event_ids() -> None:
    lines = csv_trades_to_jsonl(CSV, Path("t.csv"))
    first, second = json.loads(lines[0]), json.loads(lines[1])
    assert first == {
        "event_id": "SBER:T:101",
        "ticker": "SBER",
        "board": "TQBR",
        "trade_id": 101,
        "ts": 1764140400250,
        "price": 285.10,
        "qty": 10,
        "side": "B",
    }
    assert second["ts"] == 1764140400900  # epoch milliseconds pass through


def test_csv_trades_when_a_row_is_short_then_error_names_file_and_line() -> None:
    with pytest.raises(ReplayInputError, match=r"t\.csv:3: expected 6 columns"):
        csv_trades_to_jsonl(
            "ticker,ts,price,qty,side,trade_id\nSBER,1,2,3,B,4\nSBER,1,2\n", Path("t.csv")
        )


def test_prepare_input_when_unsorted_then_sorted_by_ts_stably_and_missing_is_empty(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"ts": 3, "n": 1}, {"ts": 1, "n": 2}, {"ts": 3, "n": 3}, {"ts": 2, "n": 4}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows) + "garbage\n")
    target = tmp_path / "out.jsonl"
    assert prepare_input(source, "trades", target) == 5
    ordered = target.read_text().splitlines()
    assert ordered[0] == "garbage"  # unparsable lines go first; the source skips them
    assert [json.loads(line)["n"] for line in ordered[1:]] == [2, 4, 1, 3]
    assert prepare_input(None, "orderbook", target) == 0
    assert target.read_text() == ""


def test_sort_key_when_rows_share_a_grain_then_whole_line_breaks_the_tie() -> None:
    a = '{"ticker":"SBER","window_end":"2025-11-26T07:00:01Z","v":2}'
    b = '{"ticker":"SBER","window_end":"2025-11-26T07:00:01Z","v":1}'
    c = '{"ticker":"GAZP","window_end":"2025-11-26T07:00:02Z","v":3}'
    grain = ["ticker", "window_end"]
    assert sorted([a, b, c], key=lambda line: sort_key(line, grain)) == [c, b, a]


@pytest.mark.flink
def test_replay_cli_when_csv_trades_and_no_book_then_writes_outputs_and_prints_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text(CSV)
    out = tmp_path / "out"
    code = main(
        ["replay", "--trades", str(trades), "--out", str(out), "--only", "candles_1m,liquidity_1s"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "replayed 4 trades, 0 book snapshots, 0 status changes" in printed
    assert "candles_1m" in printed and "liquidity_1s" in printed
    candles = [json.loads(line) for line in (out / "candles_1m.jsonl").read_text().splitlines()]
    assert [(c["ticker"], c["window_start"], c["volume"]) for c in candles] == [
        ("GAZP", "2025-11-26T07:00:00Z", 7),
        ("SBER", "2025-11-26T07:00:00Z", 15),
        ("SBER", "2025-11-26T07:01:00Z", 1),
    ]
    assert candles[1]["open"] == 285.1 and candles[1]["close"] == 285.3
    assert (out / "liquidity_1s.jsonl").read_text() == ""
    assert not (out / "signals_live.jsonl").exists()


def test_replay_cli_when_trades_file_missing_then_exit_2_without_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["replay", "--trades", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "nope.csv: no such file" in capsys.readouterr().err


@pytest.mark.flink
def test_replay_cli_when_job_runs_then_prints_progress_of_every_input_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "in"
    subprocess.run(
        [sys.executable, "-m", "producer", "synthetic", "--seed", "3", "--max-events", "2000",
         "--tickers", "SBER,GAZP", "--out", str(inputs), "--stats-every", "0"],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    monkeypatch.setattr(replay, "PROGRESS_EVERY_S", 0.5)
    out = tmp_path / "out"
    code = main(
        ["replay", "--trades", str(inputs / "trades.jsonl"),
         "--orderbook", str(inputs / "orderbook.jsonl"),
         "--status", str(inputs / "market_status.jsonl"),
         "--out", str(out), "--only", "candles_1s,liquidity_1s"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    progress = [line for line in captured.err.splitlines() if PROGRESS.match(line)]
    assert progress, captured.err[-2000:]
    for line in progress:
        assert "trades " in line and "orderbook " in line and "market_status " in line
        assert "written candles_1s " in line and "liquidity_1s " in line
    # counts never exceed the inputs' record counts (2,000 trades) nor the final output
    read = [int(m.replace(",", "")) for m in re.findall(r"trades ([\d,]+)/2,000", captured.err)]
    assert all(0 <= n <= 2000 for n in read)
    final = len((out / "candles_1s.jsonl").read_text().splitlines())
    written = [int(n.replace(",", "")) for n in re.findall(r"candles_1s ([\d,]+)", captured.err)]
    assert written and all(n <= final for n in written)
    # the closing line, printed however short the job, gives the output's final count
    assert progress[-1].endswith("job finished"), progress[-1]
    assert f"candles_1s {final:,}" in progress[-1]


def test_replay_when_same_sql_replayed_again_then_cached_plan_gives_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plan_cache, "PLANS", tmp_path / "plans")
    trades = tmp_path / "trades.csv"
    trades.write_text(CSV)
    args = ["replay", "--trades", str(trades), "--only", "candles_1s,candles_1m"]
    printed, outputs = [], []
    for run in ("first", "second"):
        assert main([*args, "--out", str(tmp_path / run)]) == 0
        printed.append(capsys.readouterr().out)
        outputs.append(
            {n: (tmp_path / run / f"{n}.jsonl").read_text() for n in ("candles_1s", "candles_1m")}
        )
    assert "planned and submit" in printed[0], printed[0]
    assert len(list((tmp_path / "plans").glob("*.json"))) == 1
    assert "cached plan and submit" in printed[1], printed[1]
    assert outputs[1] == outputs[0] and outputs[0]["candles_1m"].count("\n") == 3
    # Another subset of outputs is another plan.
    assert main([*args[:-1], "candles_1m", "--out", str(tmp_path / "third")]) == 0
    assert "planned and submit" in capsys.readouterr().out
    assert len(list((tmp_path / "plans").glob("*.json"))) == 2
