"""Runner settings: defaults for a laptop, overridable by flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from moex.paths import RUN, SQL_DIR


@dataclass
class Settings:
    bootstrap: str = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    sql_dir: Path = SQL_DIR
    topic_prefix: str = "moex."  # tests use their own prefix to stay apart on a shared broker
    group_id: str = "moex-flink"
    # Event time: how late a trade may arrive and still count in its window.
    watermark_delay_ms: int = int(os.environ.get("MOEX_WATERMARK_DELAY_MS", 1000))
    # A trades/orderbook partition silent for this long stops holding back the watermark.
    # Long on purpose: a partition marked idle while its records are merely delayed (a job
    # catching up a backlog, a producer or broker restart resuming partitions one by one)
    # has those records dropped as late when they come. A minute of silence on a partition in
    # a session means its tickers really stopped; tests/test_faults_idle.py proves a staggered
    # resumption (two partitions silent ~21 s while another runs ahead) loses nothing. The cost:
    # windows of the other partitions wait up to this long when a partition's tickers all
    # stop trading while others go on (in a MOEX session: practically never).
    idle_timeout_ms: int = int(os.environ.get("MOEX_IDLE_TIMEOUT_MS", 60_000))
    # market_status is sparse by nature (a few events a day): it turns idle quickly so that
    # the event-time join of signals with it does not wait for the next status change.
    status_idle_timeout_ms: int = int(os.environ.get("MOEX_STATUS_IDLE_TIMEOUT_MS", 1000))
    checkpoint_interval_ms: int = int(os.environ.get("MOEX_CHECKPOINT_MS", 5000))
    # Must exceed checkpoint interval + restart time, and stay under the broker's
    # transaction.max.timeout.ms (15 min): the connector's default of 1 h is refused.
    transaction_timeout_ms: int = 600_000
    checkpoint_dir: Path = RUN / "checkpoints"
    catalog_path: Path = Path(os.environ.get("MOEX_CATALOG", RUN / "catalog.json"))
    # The `run` process records its pid, job id and REST port here for `reload`.
    pid_file: Path = RUN / "runner.json"
    parallelism: int = int(os.environ.get("MOEX_PARALLELISM", 1))
    rest_port: int = int(os.environ.get("FLINK_REST_PORT", 8081))
    jvm_heap_mb: int = int(os.environ.get("FLINK_HEAP_MB", 1024))
    # Python bundles: results wait at most this long in a worker (latency of UDAF outputs).
    python_bundle_time_ms: int = 100
    only: list[str] = field(default_factory=list)
    fresh: bool = False
    txn_prefix: str = "moex"
    startup_mode: str = "group-offsets"
    # Replicas of the output topics the runner creates (3 on the compose/ cluster).
    topic_replication_factor: int = int(os.environ.get("MOEX_TOPIC_REPLICATION", 1))
    jobmanager: str | None = None  # HOST:PORT of a remote cluster (compose path)
    job_name: str = "moex-analytics"
    # Strategies (sql/strategies/, docs/backtest.md). Commission: MOEX's taker fee for TQBR
    # shares in the main trading mode T+, trading period, 0.03 % of value (0.01725 % trading +
    # 0.01275 % clearing; moex.com/s428, effective 2022-11-01); a broker's fee comes on top.
    strategy_commission: float = float(os.environ.get("MOEX_STRATEGY_COMMISSION", 0.0003))
    # Paid once per round trip, at entry (backtesting.py's `spread`), so it stands for the whole
    # quoted spread: 1 bp is its order for a TQBR blue chip (SBER's tick, 0.01 RUB on ~300 RUB,
    # is 0.33 bp); set yours from liquidity_1s (spread_bps / 10,000).
    strategy_slippage: float = float(os.environ.get("MOEX_STRATEGY_SLIPPAGE", 0.0001))
    # Roubles each ticker's book starts with; the portfolio starts with this per ticker seen.
    strategy_capital: float = float(os.environ.get("MOEX_STRATEGY_CAPITAL", 1_000_000))
