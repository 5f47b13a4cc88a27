-- indicators: Python pandas UDAFs (udfs/udafs.py) for TA-Lib EMA, Wilder RSI and MACD.
-- Flink accepts pandas UDAFs only in bounded OVER windows and cannot take a constant argument,
-- so every span is its own function: ema_12(close) OVER (... ROWS 299 PRECEDING ...).

CREATE TEMPORARY FUNCTION ema_12 AS 'udfs.udafs.ema_12' LANGUAGE PYTHON;

CREATE TEMPORARY FUNCTION ema_26 AS 'udfs.udafs.ema_26' LANGUAGE PYTHON;

CREATE TEMPORARY FUNCTION rsi_14 AS 'udfs.udafs.rsi_14' LANGUAGE PYTHON;

-- ROW(macd, macd_signal, macd_hist)
CREATE TEMPORARY FUNCTION macd_12_26_9 AS 'udfs.udafs.macd_12_26_9' LANGUAGE PYTHON;
