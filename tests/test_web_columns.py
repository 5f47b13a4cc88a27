"""The columns the pages read (web/static/columns.json) against the job's real schema.

The pages copy only these columns out of each row (`pick` in web/static/), so a column
used but not declared shows up as a blank in the browser tests, and a declared column the job
does not write fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.catalog import MARKET_STATUS
from gateway.sample_feed import RECORDED, load
from moex.paths import ROOT

PAGE_COLUMNS: dict[str, list[str]] = json.loads(
    (ROOT / "web" / "static" / "columns.json").read_text()
)["streams"]


def columns_of(catalog: dict) -> dict[str, list[str]]:
    return {o["name"]: [c["name"] for c in o["columns"]] for o in catalog["outputs"]}


@pytest.fixture(scope="module")
def current_catalog(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The catalog today's sql/ produces: every DDL run on a TableEnvironment, nothing planned."""
    from runner.catalog import catalog
    from runner.connectors import Connectors
    from runner.flink_env import create_table_env
    from runner.plan import build, load_plan
    from runner.settings import Settings

    settings = Settings(checkpoint_dir=tmp_path_factory.mktemp("checkpoints"))
    plan = load_plan(settings)
    t_env = create_table_env(settings)
    build(t_env, plan, Connectors(settings), settings)
    return catalog(t_env, plan, settings)


def missing_columns(page: dict[str, list[str]], job_columns: dict[str, list[str]]) -> list[str]:
    job_columns = {**job_columns, "market_status": [c["name"] for c in MARKET_STATUS["columns"]]}
    return [
        f"{stream}.{column}"
        for stream, columns in page.items()
        for column in columns
        if column not in job_columns.get(stream, [])
    ]


@pytest.mark.flink
def test_page_columns_when_compared_to_catalog_of_current_sql_then_job_writes_every_one(
    current_catalog: dict,
) -> None:
    assert missing_columns(PAGE_COLUMNS, columns_of(current_catalog)) == []


def test_page_columns_when_a_column_is_dropped_from_the_job_then_reported() -> None:
    job_columns = columns_of(load().catalog)
    job_columns["signals"] = [c for c in job_columns["signals"] if c != "close"]
    assert missing_columns(PAGE_COLUMNS, job_columns) == ["signals.close"]


@pytest.mark.flink
def test_recorded_fixtures_when_compared_to_current_sql_then_same_streams_and_columns(
    current_catalog: dict,
) -> None:
    recorded = json.loads((RECORDED / "catalog.json").read_text())
    assert columns_of(recorded) == columns_of(current_catalog), (
        "tests/fixtures/recorded/ is stale: re-record with `python -m tests.fixtures.record`"
    )


def test_recorded_rows_when_read_then_every_page_column_present_in_real_rows() -> None:
    recording = load()
    for stream, columns in PAGE_COLUMNS.items():
        rows = recording.rows[stream]
        assert rows, f"no recorded {stream} rows"
        assert set(columns) <= set(rows[-1]), (stream, set(columns) - set(rows[-1]))


def test_recorded_rows_when_shifted_then_last_candle_ends_at_the_minute_and_ids_follow() -> None:
    from datetime import UTC, datetime

    recording = load()
    end = datetime(2027, 3, 1, 9, 30, 41, tzinfo=UTC)
    rows = recording.shifted(end)
    assert max(r["window_end"] for r in rows["candles_1m"]) == "2027-03-01T09:30:00.000Z"
    delta = int(datetime(2027, 3, 1, 9, 30, tzinfo=UTC).timestamp() * 1000) - (
        recording.session_end_ms()
    )
    for before, after in zip(recording.rows["anomalies"], rows["anomalies"], strict=True):
        head, _, tail = before["event_id"].rpartition(":")
        assert after["event_id"] == f"{head}:{int(tail) + delta}"
        assert after["end_price"] == before["end_price"]  # prices untouched


def test_recorded_folder_when_listed_then_small_enough_to_commit() -> None:
    size = sum(p.stat().st_size for p in Path(RECORDED).iterdir())
    # ~50 KB per stream: 15 streams since the AlgoPack and strategy outputs (840 KB recorded).
    assert size < 900_000, f"{size} bytes: lower MAX_ROWS_PER_TICKER in tests/fixtures/record.py"
