"""`python -m runner check|run` on broken sql/ folders: errors as file:line:col, nothing started."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moex.paths import ROOT, SQL_DIR
from runner.cli import main
from runner.connectors import Connectors
from runner.plan import PlanError, load_plan
from runner.settings import Settings
from tests.environ import clean_environ


def copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(SQL_DIR, target)
    return target


def break_line(path: Path, old: str, new: str) -> int:
    """Replace `old` with `new` in a file; return the 1-based line of the change."""
    lines = path.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if old in line:
            lines[number - 1] = line.replace(old, new, 1)
            path.write_text("".join(lines))
            return number
    raise AssertionError(f"{old!r} not in {path}")


def structural_errors(sql_dir: Path) -> list[str]:
    settings = Settings()
    settings.sql_dir = sql_dir
    with pytest.raises(PlanError) as raised:
        load_plan(settings)
    return [str(e) for e in raised.value.errors]


@pytest.mark.flink
def test_check_when_a_column_is_misspelt_then_exit_2_with_file_and_line(tmp_path: Path) -> None:
    sql_dir = copy_sql(tmp_path)
    broken = sql_dir / "30_rolling" / "rolling_1m.sql"
    line = break_line(broken, "SUM(volume) AS volume", "SUM(volumes) AS volume")
    env = {**clean_environ(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "check", "--sql-dir", str(sql_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2, done.stderr
    assert f"{broken}:{line}:" in done.stderr
    assert "volumes" in done.stderr
    assert "nothing was started" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.flink
def test_run_when_a_view_does_not_parse_then_exit_2_and_no_job_or_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql_dir = copy_sql(tmp_path)
    broken = sql_dir / "10_views" / "bars.sql"
    line = break_line(broken, "MAX(price) AS high,", "MAX(price) AS high,,")
    catalog = tmp_path / "catalog.json"
    code = main(["run", "--sql-dir", str(sql_dir), "--catalog", str(catalog), "--fresh"])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(rf"{re.escape(str(broken))}:{line}:\d+: ", err), err
    assert not catalog.exists(), "a job would have been started after writing the catalog"


def test_load_plan_when_header_lacks_grain_and_topic_is_wrong_then_each_reported(
    tmp_path: Path,
) -> None:
    sql_dir = copy_sql(tmp_path)
    candles = sql_dir / "20_candles" / "candles_5m.sql"
    break_line(candles, "-- grain: ticker, window_end", "-- (grain removed)")
    topic_line = break_line(candles, "-- topic: moex.candles_5m", "-- topic: moex.candles_five")
    errors = structural_errors(sql_dir)
    assert any(e.startswith(f"{candles}:1:1: header lacks `-- grain:") for e in errors), errors
    assert any(e.startswith(f"{candles}:{topic_line}:1: topic") for e in errors), errors


def test_load_plan_when_file_inserts_into_another_output_then_reported_at_the_insert(
    tmp_path: Path,
) -> None:
    sql_dir = copy_sql(tmp_path)
    candles = sql_dir / "20_candles" / "candles_5m.sql"
    line = break_line(candles, "INSERT INTO candles_5m", "INSERT INTO candles_1m")
    errors = structural_errors(sql_dir)
    assert any(
        e.startswith(f"{candles}:{line}:1: a file writes only its own output") for e in errors
    ), errors


def test_load_plan_when_only_names_an_unknown_output_then_reported() -> None:
    settings = Settings()
    settings.only = ["candles_7m"]
    with pytest.raises(PlanError, match="unknown outputs"):
        load_plan(settings)


def test_load_plan_when_repository_sql_then_every_output_has_header_and_sink() -> None:
    plan = load_plan(Settings())
    names = [o.name for o in plan.outputs]
    assert names == [
        "candles_1m",
        "candles_1s",
        "candles_5m",
        "rolling_1m",
        "indicators_1m",
        "signals",
        "anomalies",
        "alerts_1m",
        "alerts_1m_outcomes",
        "alerts_1m_stats",
        "obstats_5m",
        "tradestats_5m",
        "liquidity_1s",
        "input_rejects",
        "bollinger_breakout_20",  # sql/strategies/ comes after the numbered folders
        "ema_cross_12_26",
        "rsi_reversion_14",
    ]
    twins = {o.name for o in plan.outputs if o.twin}
    assert twins == {"signals", "anomalies", "alerts_1m"}
    assert all(o.guarantee == "exactly-once" for o in plan.outputs)


def test_sources_when_built_then_market_status_idles_fast_and_trades_wait_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trades/orderbook partition marked idle while its records are only delayed has them
    dropped as late (tests/test_faults_idle.py); the sparse status topic must idle fast."""
    connectors = Connectors(Settings(idle_timeout_ms=30_000, status_idle_timeout_ms=1000))
    assert connectors.source("trades")["scan.watermark.idle-timeout"] == "30000 ms"
    assert connectors.source("orderbook")["scan.watermark.idle-timeout"] == "30000 ms"
    assert connectors.source("market_status")["scan.watermark.idle-timeout"] == "1000 ms"
    # The default, whatever the environment running the tests says (settings are read when
    # made, not at import, so the variable set here is what they see).
    monkeypatch.delenv("MOEX_IDLE_TIMEOUT_MS", raising=False)
    assert Settings().idle_timeout_ms >= 60_000
    monkeypatch.setenv("MOEX_IDLE_TIMEOUT_MS", "2000")
    assert Settings().idle_timeout_ms == 2000
