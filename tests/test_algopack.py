"""MOEX AlgoPack outputs (sql/65_algopack/): the Python functions against the independent
reference (tests/golden/algopack_reference.py) and the published examples, and one replay of a
synthetic market through the real job compared field by field with the reference and with the
producer's ground truth of injected anomalies."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moex.paths import ROOT
from producer import cli as producer_cli
from runner import replay
from runner.settings import Settings
from stack.kafka import free_port
from stack.topics import create_plain_topics, delete_topics, existing_topics
from tests.environ import clean_environ
from tests.faults_support import TopicTail
from tests.golden import algopack_reference as reference
from tests.golden.compare import differences, load_jsonl
from tests.processes import Group
from udfs import algopack

OUTPUTS = ["tradestats_5m", "obstats_5m", "alerts_1m", "alerts_1m_outcomes", "alerts_1m_stats"]
GRAINS = {
    "tradestats_5m": ["ticker", "window_end"],
    "obstats_5m": ["ticker", "window_end"],
    "alerts_1m": ["event_id"],
    "alerts_1m_outcomes": ["event_id"],
    "alerts_1m_stats": ["event_id"],
}
# What an injected anomaly should raise in its minutes (producer/synthetic.py ANOMALY_KINDS).
ALERTS_OF_KIND = {
    "spike_up": {"pr_change_99_9_pctl+", "pr_change_max", "pr_high_max"},
    "spike_down": {"pr_change_99_9_pctl-", "pr_change_min", "pr_low_min"},
    "volume": {"vol_99_9_pctl", "vol_max", "vol_b_99_9_pctl", "vol_b_max", "vol_s_99_9_pctl",
               "vol_s_max"},
}  # fmt: skip


def _random_book(rng: random.Random, depth_b: int, depth_s: int, lots: int) -> tuple[list, list]:
    tick = Decimal("0.01")
    mid = Decimal(rng.randint(20_000, 40_000)) * tick
    bids = [[mid - tick * (k + 1), Decimal(rng.randint(1, lots))] for k in range(depth_b)]
    asks = [[mid + tick * (k + 1), Decimal(rng.randint(1, lots))] for k in range(depth_s)]
    return bids, asks


def test_book_metrics_when_random_books_then_match_reference_snapshot_within_1e_9() -> None:
    rng = random.Random(3)
    names = algopack.BOOK_FIELDS
    for _ in range(300):
        ticker = rng.choice(["SBER", "VTBR", "LKOH", "SNGS"])
        bids, asks = _random_book(rng, rng.randint(0, 10), rng.randint(0, 10), rng.choice([5, 500]))
        ours = dict(zip(names, algopack.snapshot_metrics(ticker, bids, asks), strict=True))
        frame = pd.DataFrame(
            [("b", k + 1, p, q) for k, (p, q) in enumerate(bids)]
            + [("s", k + 1, p, q) for k, (p, q) in enumerate(asks)],
            columns=["side", "depth", "price", "qty"],
        )
        theirs = reference._snapshot(frame, reference.lot(ticker))
        for name in names:
            a, b = ours[name], theirs[name]
            assert (a is None) == (b is None), (name, a, b, bids, asks)
            if a is not None:
                assert a == pytest.approx(float(b), rel=1e-9, abs=1e-12), name


def test_book_frame_when_one_batch_of_mixed_books_then_each_row_as_alone() -> None:
    """The vectorised function pads every side of a batch to its deepest one: rows of different
    depths, empty sides and an unknown ticker in one batch give what each gives alone, to the
    last bit (a live run and a replay batch the same snapshot differently; with numpy's pairwise
    sums a fresh-clone CI run saw a replay's obstats differ in the 16th digit)."""
    rng = random.Random(5)
    books = [
        ("SBER", *_random_book(rng, 10, 10, 500)),
        ("VTBR", [], []),
        ("NOPE", *_random_book(rng, 3, 3, 5)),
    ]
    books += [
        (
            rng.choice(["SBER", "LKOH"]),
            *_random_book(rng, rng.randint(0, 12), rng.randint(0, 12), 50),
        )
        for _ in range(40)
    ]

    def side(levels: list) -> list[np.ndarray]:
        return [np.array([float(p), float(q)]) for p, q in levels]

    frame = algopack.book_frame(
        pd.Series([t for t, _, _ in books]),
        pd.Series([side(b) for _, b, _ in books]),
        pd.Series([side(a) for _, _, a in books]),
    )
    assert list(frame.columns) == list(algopack.BOOK_FIELDS)
    for (ticker, bids, asks), (_, row) in zip(books, frame.iterrows(), strict=True):
        alone = algopack.snapshot_metrics(ticker, bids, asks)
        for name, value in zip(algopack.BOOK_FIELDS, alone, strict=True):
            if value is None:
                assert np.isnan(row[name]), (ticker, name)
            else:
                assert row[name] == value, (ticker, name)
    assert frame.iloc[2].isna().all()  # unknown ticker: no lot size, no metric
    assert frame.iloc[1][["levels_b", "vol_b"]].tolist() == [0.0, 0.0]


def test_vwap_1mio_when_published_example_book_then_333333_roubles() -> None:
    """docs/method/supercandles.md: bids 150 @ 3000, 100 @ 3500, 50 @ 4000, 25 @ 4500: the first
    three make 1 mio roubles, VWAP (150*3000 + 100*3500 + 50*4000) / 300 (printed 333.33 there,
    a slip for 3333.33)."""
    levels = [
        [Decimal(p), Decimal(q)] for p, q in ((3000, 150), (3500, 100), (4000, 50), (4500, 25))
    ]
    assert float(algopack.vwap_for_value(levels, lot=1)) == pytest.approx(
        10_000_000 / 3000, rel=1e-12
    )
    assert algopack.vwap_for_value(levels[:2], lot=1) is None  # 800,000 roubles only


def test_tradestats_reference_when_published_examples_then_reproduced() -> None:
    """docs/method/supercandles.md: two buys 100 @ 10 and 200 @ 20 give pr_vwap_b 16.67;
    docs/description/supercandles.md row ABIO: vol_b 812, vol_s 702 -> disb 0.07; open 113.76,
    close 113.72 -> pr_change -0.0352."""
    t0 = 1764140400000
    trades = [
        {"ticker": "VTBR", "ts": t0, "trade_id": 1, "price": "113.76", "qty": 812, "side": "B"},
        {"ticker": "VTBR", "ts": t0 + 1, "trade_id": 2, "price": "113.72", "qty": 702, "side": "S"},
        {"ticker": "LKOH", "ts": t0, "trade_id": 3, "price": "10", "qty": 100, "side": "B"},
        {"ticker": "LKOH", "ts": t0 + 1, "trade_id": 4, "price": "20", "qty": 200, "side": "B"},
    ]
    rows = {r["ticker"]: r for r in reference.tradestats_5m(trades)}
    assert round(rows["VTBR"]["disb"], 2) == 0.07
    assert round(rows["VTBR"]["pr_change"], 4) == -0.0352
    assert round(rows["LKOH"]["pr_vwap_b"], 2) == Decimal("16.67")
    assert rows["LKOH"]["val"] == Decimal(5000)  # lot 1: 100 * 10 + 200 * 20 roubles


def test_history_thresholds_when_random_history_then_pandas_quantile_and_extremes() -> None:
    rng = np.random.default_rng(5)
    for n in (2, 6, 50, 1001):
        columns = {name: rng.normal(0, 100, n) for name in reference.ALERT_TYPES_METRICS}
        got = dict(
            zip(
                [f for f, _ in algopack.HISTORY_FIELDS],
                algopack.history_thresholds(columns),
                strict=True,
            )
        )
        assert got["history"] == n - 1
        past = pd.Series(columns["net_vol"][:-1])
        assert got["net_vol_p999"] == pytest.approx(past.quantile(0.999), rel=1e-12)
        assert got["net_vol_p001"] == pytest.approx(past.quantile(0.001), rel=1e-12)
        assert got["pr_high_max"] == pd.Series(columns["pr_high"][:-1]).max()
        assert got["pr_low_min"] == pd.Series(columns["pr_low"][:-1]).min()


def _found(truth: list[dict], alerts: list[dict], warm_up_ms: dict[str, int]) -> list[dict]:
    """The complete anomalies after their ticker's warm-up with no alert of their family in the
    minutes they span."""
    missed = []
    for anomaly in truth:
        if not anomaly["complete"] or anomaly["start_ts"] < warm_up_ms[anomaly["ticker"]]:
            continue
        first = anomaly["start_ts"] // 60_000 * 60_000
        spanned = {reference.oracle_iso(m) for m in range(first, anomaly["end_ts"] + 1, 60_000)}
        hits = [
            a for a in alerts
            if a["ticker"] == anomaly["ticker"] and a["minute_start"] in spanned
            and a["alert_type"] in ALERTS_OF_KIND[anomaly["kind"]]
        ]  # fmt: skip
        if not hits:
            missed.append(anomaly)
    return missed


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 minutes of a two-ticker synthetic session with an injected anomaly every few minutes."""
    folder = tmp_path_factory.mktemp("algopack_market")
    code = producer_cli.main(
        ["synthetic", "--seed", "11", "--tickers", "SBER,GAZP", "--max-events", "40000",
         "--anomaly-rate", "0.15", "--start", "2026-11-26T12:00:00+03:00", "--out", str(folder),
         "--stats-every", "0"]
    )  # fmt: skip
    assert code == 0
    return folder


def _warm_up(trades: list[dict]) -> dict[str, int]:
    """Per ticker, the start of its first minute that has WARM_UP earlier minutes with trades."""
    minutes = reference.minutes(trades)
    return {
        ticker: int(group["minute"].iloc[reference.WARM_UP])
        for ticker, group in minutes.groupby("ticker")
    }


def test_alerts_reference_when_synthetic_anomalies_injected_then_each_found(market: Path) -> None:
    trades = [json.loads(line) for line in (market / "trades.jsonl").read_text().splitlines()]
    truth = [json.loads(line) for line in (market / "truth.jsonl").read_text().splitlines()]
    eligible = [
        a for a in truth if a["complete"] and a["start_ts"] >= _warm_up(trades)[a["ticker"]]
    ]
    assert len(eligible) >= 3, truth
    assert _found(truth, reference.alerts_1m(trades), _warm_up(trades)) == []


@pytest.fixture(scope="module")
def replayed(market: Path, tmp_path_factory: pytest.TempPathFactory) -> replay.ReplayResult:
    settings = Settings()
    settings.only = OUTPUTS
    out = tmp_path_factory.mktemp("algopack_replay")
    return replay.run(settings, market / "trades.jsonl", out, market / "orderbook.jsonl")


@pytest.mark.flink
def test_algopack_when_synthetic_market_replayed_then_rows_match_reference_and_truth(
    market: Path, replayed: replay.ReplayResult
) -> None:
    result = replayed
    trades = [json.loads(line) for line in (market / "trades.jsonl").read_text().splitlines()]
    books = [json.loads(line) for line in (market / "orderbook.jsonl").read_text().splitlines()]
    expected = {
        "tradestats_5m": reference.tradestats_5m(trades),
        "obstats_5m": reference.obstats_5m(books),
        "alerts_1m": reference.alerts_1m(trades),
        "alerts_1m_outcomes": reference.public(reference.alerts_1m_outcomes(trades)),
        "alerts_1m_stats": reference.alerts_1m_stats(trades),
    }
    for name in OUTPUTS:
        actual = load_jsonl(result.out_dir / f"{name}.jsonl")
        assert actual, f"{name}: no rows"
        as_json = [
            json.loads(json.dumps(r, default=str), parse_float=Decimal) for r in expected[name]
        ]
        problems = differences(as_json, actual, GRAINS[name])
        assert not problems, f"{name}:\n" + "\n".join(problems[:20])
    truth = [json.loads(line) for line in (market / "truth.jsonl").read_text().splitlines()]
    assert _found(truth, result.rows("alerts_1m"), _warm_up(trades)) == []


def _unequal(
    expected: list[dict], actual: list[dict], grain: list[str], doubles: set[str]
) -> list[tuple]:
    """(grain, {column: (expected, actual)}) of every actual row not equal to its expected one:
    exact, except DOUBLE columns within 1e-12 relative (a sum of doubles, e.g. STDDEV_POP's,
    may differ in its last bit with the order in which rows reach the window)."""

    def same(column: str, want: object, got: object) -> bool:
        if column in doubles and want is not None and got is not None:
            return math.isclose(float(want), float(got), rel_tol=1e-12)
        return want == got  # Decimal equality is numeric: 130.02 == 130.020000

    by_grain = {tuple(r[c] for c in grain): r for r in expected}
    out = []
    for row in actual:
        key = tuple(row[c] for c in grain)
        want = by_grain.get(key, {})
        columns = set(want) | set(row)
        bad = {
            c: (want.get(c), row.get(c)) for c in columns if not same(c, want.get(c), row.get(c))
        }
        if bad:
            out.append((key, bad))
    return out


def _sentinels(market: Path, later_ms: int) -> list[tuple[str, dict]]:
    """Per ticker, its last trade and book again `later_ms` on: the watermark passes every
    window and outcome horizon of the session, and no window holding a sentinel closes."""
    rows: list[tuple[str, dict]] = []
    for topic, number in (("trades", "trade_id"), ("orderbook", "seq")):
        last: dict[str, dict] = {}
        for line in (market / f"{topic}.jsonl").read_text().splitlines():
            row = json.loads(line)  # prices as floats: printed back as the same short decimals
            last[row["ticker"]] = row
        for row in last.values():
            moved = {**row, "ts": row["ts"] + later_ms, number: row[number] + 1}
            moved["event_id"] = row["event_id"].rsplit(":", 1)[0] + f":{moved[number]}"
            rows.append((topic, moved))
    return rows


@pytest.mark.kafka
@pytest.mark.flink
def test_algopack_when_same_market_runs_live_then_rows_identical_to_replay(
    market: Path, replayed: replay.ReplayResult, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The live job (the producer's replay into Kafka, exactly-once Kafka out, read_committed)
    gives the replay's rows: the same windows, alerts, outcomes and statistics, every decimal,
    integer, string and timestamp equal, doubles to 1e-12 relative."""
    from kafka import KafkaProducer

    prefix = f"ap{uuid.uuid4().hex[:8]}."
    inputs = [f"{prefix}{t}" for t in ("trades", "orderbook", "market_status", "dlq")]
    # One partition each: the watermark follows the one reader, with no idle partition to time
    # out while the job catches up the backlog (records then dropped as late, by design).
    create_plain_topics(kafka_bootstrap, {t: 1 for t in inputs})
    env = {**clean_environ(), "PYTHONPATH": str(ROOT)}
    fed = subprocess.run(
        [sys.executable, "-m", "producer", "replay", str(market), "--speed", "0",
         "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--stats-every", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert fed.returncode == 0, fed.stdout[-2000:] + fed.stderr[-2000:]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for topic, row in _sentinels(market, later_ms=2 * 3_600_000):
        value = json.dumps(row).encode()
        producer.send(f"{prefix}{topic}", key=row["ticker"].encode(), value=value)
    producer.flush()
    producer.close()

    run_id = prefix.rstrip(".")
    command = [
        sys.executable, "-m", "runner", "run",
        "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
        "--txn-prefix", run_id, "--group-id", run_id, "--fresh",
        "--only", ",".join(OUTPUTS),
        "--checkpoint-dir", str(tmp_path / "checkpoints"), "--checkpoint-ms", "1000",
        "--rest-port", str(free_port()),
        "--catalog", str(tmp_path / "catalog.json"),
        "--pid-file", str(tmp_path / "runner.json"),
    ]  # fmt: skip
    job = Group(command, tmp_path / "runner.log", env).start()
    tails: dict[str, TopicTail] = {}
    try:
        replay_rows = {name: load_jsonl(replayed.out_dir / f"{name}.jsonl") for name in OUTPUTS}
        wanted = {name: len(rows) for name, rows in replay_rows.items()}
        # The deadline covers the job's start (planning, Python workers) on a loaded machine.
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and job.running():
            if len(tails) < len(OUTPUTS):  # the runner creates its output topics as it starts
                existing = existing_topics(kafka_bootstrap)
                for name in OUTPUTS:
                    if name not in tails and f"{prefix}{name}" in existing:
                        tails[name] = TopicTail(kafka_bootstrap, f"{prefix}{name}")
                time.sleep(0.5)
            for tail in tails.values():
                tail.poll(200)
            if len(tails) == len(OUTPUTS) and all(
                len(tails[n].rows()) >= wanted[n] for n in OUTPUTS
            ):
                break
        assert job.running(), job.log(3000)
        # A few more checkpoints: anything beyond the replay's rows would show now.
        time.sleep(3)
        catalog = json.loads((tmp_path / "catalog.json").read_text())
        doubles = {
            o["name"]: {c["name"] for c in o["columns"] if c["type"].startswith("DOUBLE")}
            for o in catalog["outputs"]
        }
        for name in OUTPUTS:
            tails[name].drain()
            live = tails[name].rows()
            expected = replay_rows[name]
            assert len(live) == len(expected), f"{name}: {len(live)} live, {len(expected)} replayed"
            unequal = _unequal(expected, live, GRAINS[name], doubles[name])
            assert not unequal, f"{name}: {len(unequal)} rows differ, e.g. {unequal[:3]}"
    finally:
        for tail in tails.values():
            tail.close()
        job.stop()
        outputs = [*(f"{prefix}{n}" for n in OUTPUTS), f"{prefix}alerts_1m_live"]
        existing = existing_topics(kafka_bootstrap)
        delete_topics(kafka_bootstrap, [t for t in [*inputs, *outputs] if t in existing])
