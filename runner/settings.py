"""Runner settings: defaults for a laptop, then the environment (MOEX_*, and the few shared
names KAFKA_BOOTSTRAP, FLINK_REST_PORT, FLINK_HEAP_MB), then the command line's flags.

Read once, when a command builds `Settings(**flags)` (moex/settings.py); the table of options
in docs/operations.md is generated from the fields below (`python -m moex settings --markdown`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from moex.paths import RUN, SQL_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOEX_", validate_by_name=True)

    bootstrap: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP", description="Kafka bootstrap servers"
    )
    sql_dir: Path = Field(SQL_DIR, description="folder of .sql files")
    # Tests use their own prefix to stay apart on a shared broker.
    topic_prefix: str = Field("moex.", description="topic name prefix")
    group_id: str = Field("moex-flink", description="Kafka consumer group of the sources")
    watermark_delay_ms: int = Field(
        1000,
        description="how late a trade may arrive and still count in its window; also the floor "
        "of every result's latency (`make up` sets 300: its synthetic feed is in event-time order "
        "per partition; keep >= 1 s for the ISS poller)",
    )
    # Long on purpose: a partition marked idle while its records are merely delayed (a job
    # catching up a backlog, a producer or broker restart resuming partitions one by one)
    # has those records dropped as late when they come. A minute of silence on a partition in
    # a session means its tickers really stopped; tests/test_faults_idle.py proves a staggered
    # resumption (two partitions silent ~21 s while another runs ahead) loses nothing. The cost:
    # windows of the other partitions wait up to this long when a partition's tickers all
    # stop trading while others go on (in a MOEX session: practically never).
    idle_timeout_ms: int = Field(
        60_000,
        description="a silent trades/orderbook partition stops holding back the watermark after "
        "this; shorter risks dropping delayed records as late (docs/guarantees.md)",
    )
    # market_status is sparse by nature (a few events a day): it turns idle quickly so that
    # the event-time join of signals with it does not wait for the next status change.
    status_idle_timeout_ms: int = Field(
        1000, description="the same for the sparse market_status topic"
    )
    checkpoint_interval_ms: int = Field(
        5000,
        validation_alias="MOEX_CHECKPOINT_MS",
        description="checkpoint interval = latency of exactly-once results",
        json_schema_extra={"flag": "--checkpoint-ms"},
    )
    # Must exceed checkpoint interval + restart time, and stay under the broker's
    # transaction.max.timeout.ms (15 min): the connector's default of 1 h is refused.
    transaction_timeout_ms: int = 600_000
    checkpoint_dir: Path = Field(
        default_factory=lambda: RUN / "checkpoints", description="retained checkpoints"
    )
    catalog_path: Path = Field(
        default_factory=lambda: RUN / "catalog.json",
        validation_alias="MOEX_CATALOG",
        description="where `run` writes the outputs catalog the gateway reads",
        json_schema_extra={"flag": "--catalog"},
    )
    # The `run` process records its pid, job id and REST port here for `reload`.
    pid_file: Path = Field(
        default_factory=lambda: RUN / "runner.json",
        description="where the running runner records itself (for `reload`, `make status`)",
    )
    parallelism: int = Field(1, description="parallelism of the job")
    rest_port: int = Field(
        8081, validation_alias="FLINK_REST_PORT", description="Flink REST / web UI port"
    )
    jvm_heap_mb: int = Field(
        1024,
        validation_alias="FLINK_HEAP_MB",
        description="heap of the JVM hosting the MiniCluster",
    )
    # Python bundles: results wait at most this long in a worker (latency of UDAF outputs).
    python_bundle_time_ms: int = 100
    only: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated outputs to run (all by default)"
    )
    fresh: bool = Field(False, description="ignore retained checkpoints")
    txn_prefix: str = Field("moex", description="transactional id prefix (unique per job)")
    startup_mode: str = "group-offsets"
    topic_replication_factor: int = Field(
        1,
        validation_alias="MOEX_TOPIC_REPLICATION",
        description="replicas of the output topics the runner creates (3 on the compose/ cluster)",
    )
    jobmanager: str | None = Field(None, description="HOST:PORT of a remote Flink cluster")
    # Python workers on a remote cluster's TaskManagers import udfs/ from here (compose).
    remote_pythonpath: str = Field(
        "/opt/moex",
        description="where a remote cluster's TaskManagers find this repository (`--jobmanager`)",
        json_schema_extra={"flag": None},
    )
    job_name: str = "moex-analytics"
    # Strategies (sql/strategies/, docs/backtest.md). Commission: MOEX's taker fee for TQBR
    # shares in the main trading mode T+, trading period, 0.03 % of value (0.01725 % trading +
    # 0.01275 % clearing; moex.com/s428, effective 2022-11-01); a broker's fee comes on top.
    strategy_commission: float = Field(
        0.0003,
        description="backtest: rate of each fill's value paid as commission",
        json_schema_extra={"flag": "--commission"},
    )
    # Paid once per round trip, at entry (backtesting.py's `spread`), so it stands for the whole
    # quoted spread: 1 bp is its order for a TQBR blue chip (SBER's tick, 0.01 RUB on ~300 RUB,
    # is 0.33 bp); set yours from liquidity_1s (spread_bps / 10,000).
    strategy_slippage: float = Field(
        0.0001,
        description="backtest: entry price premium rate (the quoted spread)",
        json_schema_extra={"flag": "--slippage"},
    )
    # Roubles each ticker's book starts with; the portfolio starts with this per ticker seen.
    strategy_capital: float = Field(
        1_000_000,
        description="backtest: roubles each ticker's book starts with",
        json_schema_extra={"flag": "--capital"},
    )

    @field_validator("only", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value
