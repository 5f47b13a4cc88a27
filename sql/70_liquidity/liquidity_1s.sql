-- liquidity_1s: spread, mid and depth of the last order-book snapshot of each second per ticker.
-- grain: ticker, window_end
-- topic: moex.liquidity_1s
-- guarantee: exactly-once
--
-- The last snapshot is the one with the highest seq in the second (a window Top-1: exact even
-- for two snapshots in one millisecond). A second without snapshots has no row. A side with
-- fewer than 10 levels counts the levels it has; an empty side gives NULL spread/mid.

CREATE TABLE liquidity_1s (
  ticker       STRING,
  window_end   TIMESTAMP_LTZ(3),
  spread       DECIMAL(18, 6),  -- roubles: best ask - best bid
  spread_bps   DOUBLE,          -- basis points of the mid: 10000 * spread / mid
  mid          DECIMAL(18, 6),  -- roubles: (best bid + best ask) / 2
  bid_depth_5  BIGINT,          -- lots on the best 5 bid levels
  ask_depth_5  BIGINT,          -- lots on the best 5 ask levels
  bid_depth_10 BIGINT,          -- lots on the best 10 bid levels
  ask_depth_10 BIGINT,          -- lots on the best 10 ask levels
  imbalance    DOUBLE           -- (bid_depth_10 - ask_depth_10) / (bid_depth_10 + ask_depth_10), -1..1
) WITH (${SINK});

CREATE VIEW book_depth_1s AS
SELECT ticker, window_end, bids[1][1] AS best_bid, asks[1][1] AS best_ask,
  CAST(COALESCE(bids[1][2], 0) + COALESCE(bids[2][2], 0) + COALESCE(bids[3][2], 0)
     + COALESCE(bids[4][2], 0) + COALESCE(bids[5][2], 0) AS BIGINT) AS bid_depth_5,
  CAST(COALESCE(asks[1][2], 0) + COALESCE(asks[2][2], 0) + COALESCE(asks[3][2], 0)
     + COALESCE(asks[4][2], 0) + COALESCE(asks[5][2], 0) AS BIGINT) AS ask_depth_5,
  CAST(COALESCE(bids[6][2], 0) + COALESCE(bids[7][2], 0) + COALESCE(bids[8][2], 0)
     + COALESCE(bids[9][2], 0) + COALESCE(bids[10][2], 0) AS BIGINT) AS bid_depth_6_10,
  CAST(COALESCE(asks[6][2], 0) + COALESCE(asks[7][2], 0) + COALESCE(asks[8][2], 0)
     + COALESCE(asks[9][2], 0) + COALESCE(asks[10][2], 0) AS BIGINT) AS ask_depth_6_10
FROM (
  SELECT ticker, window_end, bids, asks,
    ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ticker ORDER BY seq DESC) AS recency
  FROM TABLE(TUMBLE(TABLE orderbook, DESCRIPTOR(book_second), INTERVAL '1' SECOND))
)
WHERE recency = 1;

INSERT INTO liquidity_1s
SELECT ticker,
  CAST(window_end AS TIMESTAMP_LTZ(3)),
  best_ask - best_bid,
  CAST(best_ask - best_bid AS DOUBLE) / CAST((best_ask + best_bid) / 2 AS DOUBLE) * 10000,
  CAST((best_bid + best_ask) / 2 AS DECIMAL(18, 6)),
  bid_depth_5,
  ask_depth_5,
  bid_depth_5 + bid_depth_6_10,
  ask_depth_5 + ask_depth_6_10,
  CASE WHEN bid_depth_5 + bid_depth_6_10 + ask_depth_5 + ask_depth_6_10 > 0 THEN
    CAST(bid_depth_5 + bid_depth_6_10 - ask_depth_5 - ask_depth_6_10 AS DOUBLE)
      / (bid_depth_5 + bid_depth_6_10 + ask_depth_5 + ask_depth_6_10)
  END
FROM book_depth_1s;
