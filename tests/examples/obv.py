"""The worked example of docs/flink-job.md ("Adding an indicator: on-balance volume"), as the
tests write it into a temporary copy of sql/. Keep the two in step: the docs' text is what a
user copies, this is what proves it works."""

from __future__ import annotations

from pathlib import Path

NAME = "obv_1m"
FOLDER = "45_volume"

SQL = """\
-- obv_1m: on-balance volume of every 1-minute candle, TA-Lib's OBV: a running sum of the volume signed by the close's direction.
-- grain: ticker, window_end
-- topic: moex.obv_1m
-- guarantee: exactly-once

CREATE TABLE obv_1m (
  ticker     STRING,
  window_end TIMESTAMP_LTZ(3),  -- end of the 1-minute candle
  `close`    DECIMAL(18, 6),    -- roubles
  obv        BIGINT             -- lots: the first candle counts +volume, as in TA-Lib
) WITH (${SINK});

-- Each candle's volume, signed by the move from the previous close (0 when unchanged).
CREATE VIEW obv_steps_1m AS
SELECT ticker, bar_end, bar_time, `close`,
  CASE
    WHEN LAG(`close`) OVER history IS NULL OR `close` > LAG(`close`) OVER history THEN volume
    WHEN `close` < LAG(`close`) OVER history THEN -volume
    ELSE 0
  END AS signed_volume
FROM bars_1m
WINDOW history AS (PARTITION BY ticker ORDER BY bar_time);

INSERT INTO obv_1m
SELECT ticker, bar_end, `close`,
  SUM(signed_volume) OVER (
    PARTITION BY ticker ORDER BY bar_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
FROM obv_steps_1m;
"""

# Four candles with closes 100, 101, 101, 99 and volumes 5, 7, 2, 4 give obv 5, 12, 12, 8.
GOLDEN_TRADES = """\
{"event_id":"SBER:T:1","ticker":"SBER","board":"TQBR","trade_id":1,"ts":1764140410000,"price":100.0,"qty":5,"side":"B"}
{"event_id":"SBER:T:2","ticker":"SBER","board":"TQBR","trade_id":2,"ts":1764140470000,"price":101.0,"qty":7,"side":"B"}
{"event_id":"SBER:T:3","ticker":"SBER","board":"TQBR","trade_id":3,"ts":1764140530000,"price":101.0,"qty":2,"side":"S"}
{"event_id":"SBER:T:4","ticker":"SBER","board":"TQBR","trade_id":4,"ts":1764140590000,"price":99.0,"qty":4,"side":"S"}
"""
GOLDEN_EXPECTED = """\
{"ticker": "SBER", "window_end": "2025-11-26T07:01:00Z", "close": "100.0", "obv": 5}
{"ticker": "SBER", "window_end": "2025-11-26T07:02:00Z", "close": "101.0", "obv": 12}
{"ticker": "SBER", "window_end": "2025-11-26T07:03:00Z", "close": "101.0", "obv": 12}
{"ticker": "SBER", "window_end": "2025-11-26T07:04:00Z", "close": "99.0", "obv": 8}
"""


def write(sql_dir: Path, name: str = NAME, sql: str = SQL) -> Path:
    """Step 1 of the example: the SQL file (renamed: file name = table = topic suffix)."""
    path = sql_dir / FOLDER / f"{name}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql.replace(NAME, name))
    return path


def write_golden(golden_dir: Path, name: str = NAME) -> Path:
    """Step 2: its golden case."""
    case = golden_dir / name / "four_candles"
    case.mkdir(parents=True, exist_ok=True)
    (case / "trades.jsonl").write_text(GOLDEN_TRADES)
    (case / "expected.jsonl").write_text(GOLDEN_EXPECTED)
    return case
