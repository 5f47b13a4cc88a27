-- obstats_5m: MOEX AlgoPack OBStats ("Super Candles" of the order book) per ticker and 5 minutes.
-- grain: ticker, window_end
-- topic: moex.obstats_5m
-- guarantee: exactly-once
--
-- Definitions: moexalgo.github.io docs/description/supercandles.md and docs/method/
-- supercandles.md (commit f10e63de); the official resampler moexalgo/beta/resample.py
-- (moexalgo/moexalgo 4df0dbb2) averages every field over the interval and derives
-- vwap_b = mean val_b / (mean vol_b x lot size). Each snapshot's metrics come from
-- book_metrics() (udfs/algopack.py); every field here is their plain mean over the window's
-- snapshots (each snapshot weighs the same, whatever time it stood), NULLs left out:
--   spread_bbo   10^4 (best ask - best bid) / mid, basis points; mid = (best bid + best ask) / 2
--   spread_lv10  10^4 (10th ask - 10th bid) / mid, basis points
--   spread_1mio  10^4 (vwap_s_1mio - vwap_b_1mio) / mid, basis points
--   levels_b/_s  price levels on the side
--   vol_b/_s     lots on the side; val_b/_s the same in roubles (price x lots x lot size)
--   imbalance_vol_bbo  (best bid lots - best ask lots) / their sum, -1..1 (> 0: buyers)
--   imbalance_val_bbo  the same in roubles; imbalance_vol/_val the same over all levels
--   vwap_b/_s    mean val_b / (mean vol_b x lot size): roubles per share
--   vwap_b_1mio  average price of selling 1 mio roubles into the bids (the best levels first,
--                the last one in part); vwap_s_1mio buying 1 mio from the asks
-- Deviations (our books are the 10 best levels a side, AlgoPack sees the whole book):
--  * levels_*, vol_*, val_*, imbalance_vol/_val and vwap_b/_s cover the visible 10 levels only.
--  * spread_lv10 is NULL for a snapshot with fewer than 10 levels on a side; vwap_*_1mio (and
--    spread_1mio) NULL when the side's 10 levels hold less than 1 mio roubles (VTBR's often
--    do); spreads and *_bbo NULL for a snapshot with an empty side. A window where every
--    snapshot is NULL for a field gives NULL.
--  * levels_* and vol_* are exact means (DOUBLE); AlgoPack rounds them to integers, val_* to
--    roubles, spreads to 0.1 bp, imbalances to 0.01.
-- Windows without snapshots have no row.

CREATE TABLE obstats_5m (
  ticker            STRING,
  window_start      TIMESTAMP_LTZ(3),
  window_end        TIMESTAMP_LTZ(3),  -- AlgoPack tradetime
  snapshots         BIGINT,            -- book snapshots averaged
  spread_bbo        DOUBLE,            -- basis points of the mid
  spread_lv10       DOUBLE,            -- basis points of the mid
  spread_1mio       DOUBLE,            -- basis points of the mid
  levels_b          DOUBLE,            -- visible bid levels (at most 10)
  levels_s          DOUBLE,            -- visible ask levels (at most 10)
  vol_b             DOUBLE,            -- lots
  vol_s             DOUBLE,            -- lots
  val_b             DOUBLE,            -- roubles
  val_s             DOUBLE,            -- roubles
  imbalance_vol_bbo DOUBLE,            -- -1..1
  imbalance_val_bbo DOUBLE,            -- -1..1
  imbalance_vol     DOUBLE,            -- -1..1
  imbalance_val     DOUBLE,            -- -1..1
  vwap_b            DOUBLE,            -- roubles per share
  vwap_s            DOUBLE,            -- roubles per share
  vwap_b_1mio       DOUBLE,            -- roubles per share
  vwap_s_1mio       DOUBLE             -- roubles per share
) WITH (${SINK});

-- One row per snapshot with its metrics as columns (book_metrics is vectorised: one Python call
-- per Arrow batch; the levels go to it as DOUBLE, every metric being a DOUBLE ratio or sum).
CREATE VIEW book_metrics_1 AS
SELECT ticker, book_second,
  book_metrics(ticker, CAST(bids AS ARRAY<ARRAY<DOUBLE>>), CAST(asks AS ARRAY<ARRAY<DOUBLE>>)) AS m,
  lot_size(ticker) AS lot
FROM orderbook;

INSERT INTO obstats_5m
SELECT ticker,
  CAST(window_start AS TIMESTAMP_LTZ(3)),
  CAST(window_end AS TIMESTAMP_LTZ(3)),
  COUNT(*),
  AVG(m.spread_bbo), AVG(m.spread_lv10), AVG(m.spread_1mio),
  AVG(m.levels_b), AVG(m.levels_s),
  AVG(m.vol_b), AVG(m.vol_s), AVG(m.val_b), AVG(m.val_s),
  AVG(m.imbalance_vol_bbo), AVG(m.imbalance_val_bbo), AVG(m.imbalance_vol), AVG(m.imbalance_val),
  CASE WHEN SUM(m.vol_b) > 0 THEN SUM(m.val_b) / (SUM(m.vol_b) * MAX(lot)) END,
  CASE WHEN SUM(m.vol_s) > 0 THEN SUM(m.val_s) / (SUM(m.vol_s) * MAX(lot)) END,
  AVG(m.vwap_b_1mio), AVG(m.vwap_s_1mio)
FROM TABLE(TUMBLE(TABLE book_metrics_1, DESCRIPTOR(book_second), INTERVAL '5' MINUTE))
GROUP BY ticker, window_start, window_end;
