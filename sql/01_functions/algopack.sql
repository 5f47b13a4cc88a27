-- algopack: Python functions of the MOEX AlgoPack outputs (udfs/algopack.py, sql/65_algopack/).

-- LOTSIZE of a ticker (producer/reference.py): shares per lot, NULL for an unknown ticker.
CREATE TEMPORARY FUNCTION lot_size AS 'udfs.algopack.lot_size' LANGUAGE PYTHON;

-- AlgoPack OBStats metrics of one book snapshot: ROW(spread_bbo, spread_lv10, spread_1mio,
-- levels_b, levels_s, vol_b, vol_s, val_b, val_s, imbalance_vol_bbo, imbalance_val_bbo,
-- imbalance_vol, imbalance_val, vwap_b_1mio, vwap_s_1mio), all DOUBLE.
CREATE TEMPORARY FUNCTION book_metrics AS 'udfs.algopack.book_metrics' LANGUAGE PYTHON;

-- Mega Alerts thresholds of a ticker's minute from the minutes before it, a pandas UDAF for a
-- bounded OVER window: ROW(history, vol_p999, vol_b_p999, vol_s_p999, net_vol_p999,
-- net_vol_p001, pr_change_p999, pr_change_p001, vol_max, vol_b_max, vol_s_max, net_vol_max,
-- net_vol_min, pr_change_max, pr_change_min, pr_high_max, pr_low_min), all DOUBLE.
CREATE TEMPORARY FUNCTION alert_history AS 'udfs.algopack.alert_history' LANGUAGE PYTHON;
