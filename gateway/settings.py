"""Gateway settings: defaults, then the environment (GATEWAY_*, and the shared KAFKA_BOOTSTRAP
and MOEX_CATALOG), then the command line's flags. Each option is defined once, below; the flags
and the table in docs/operations.md are made from the fields (moex/settings.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from moex.paths import RUN
from moex.settings import add_flags, flag_of, given

DEFAULT_CATALOG = RUN / "catalog.json"


def auto_workers(cores: int | None = None) -> int:
    """Half the cores: `make up` runs Kafka and the Flink job on the same machine, and they need
    the other half (1 worker on 2 cores, 2 on 4, 4 on 8). One worker serves 1,000 clients at
    20 rows/s in well under one core (docs/capacity.md)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0))
    return max(1, cores // 2)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", validate_by_name=True, frozen=True)

    host: str = Field("127.0.0.1", description="bind address (loopback by default)")
    port: int = Field(8000, description="HTTP port")
    # None runs the HTTP side alone (route tests); /healthz then reports the broker unreachable.
    bootstrap: str | None = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP", description="Kafka bootstrap servers"
    )
    catalog: Path = Field(
        DEFAULT_CATALOG,
        validation_alias="MOEX_CATALOG",
        description="the outputs catalog the runner writes",
    )
    # The token comes from the environment only: a flag would show it in `ps`.
    token: str | None = Field(
        None,
        description="bearer token every /api request must carry (none: open)",
        json_schema_extra={"flag": None},
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated origins allowed by CORS (none by default)"
    )
    heartbeat_s: float = Field(
        15.0,
        gt=0,
        description="seconds between SSE heartbeats",
        json_schema_extra={"flag": "--heartbeat"},
    )
    max_clients: int = Field(200, description="SSE clients per worker; more get 503")
    # Events waiting for one client; beyond it the client is dropped and reconnects.
    client_queue: int = Field(
        5000, ge=1, description="events waiting for one client before it is dropped"
    )
    send_timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds a write to one client may take before it is dropped",
        json_schema_extra={"flag": "--send-timeout"},
    )
    buffer_rows: int = Field(5000, ge=1, description="rows kept in memory per (stream, ticker)")
    backfill: int = Field(5000, description="records read back per partition at start")
    replay_max: int = Field(
        50000, description="records read from Kafka per partition for one resume"
    )
    log_level: str = Field("info", description="log level")
    workers: int = Field(
        1,
        description="gateway processes sharing the port, or 'auto' (half the cores); each reads "
        "every topic and keeps its own --max-clients",
        json_schema_extra={"flag_text": True},
    )
    # /healthz reports the Flink job's health (gateway/job_health.py) from these.
    runner_pid_file: Path = Field(
        default_factory=lambda: RUN / "runner.json",
        validation_alias="MOEX_PID_FILE",
        description="the running runner's record: where /healthz finds the Flink job",
    )
    flink_rest_port: int | None = Field(
        None,
        validation_alias="FLINK_REST_PORT",
        description="without a runner record, /healthz reports the newest job on this port",
    )
    # Bind with SO_REUSEPORT: set by the supervisor for its workers (and by workers > 1).
    reuse_port: bool = False

    @field_validator("bootstrap", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(origin.strip() for origin in value.split(",") if origin.strip())
        return value

    @field_validator("backfill", mode="after")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        return max(0, value)

    @field_validator("replay_max", mode="after")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        return max(1, value)

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: object) -> object:
        if value == "auto":
            return auto_workers()
        if int(value) < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return value

    @model_validator(mode="after")
    def _several_workers_share_the_port(self) -> Settings:
        if self.workers > 1 and not self.reuse_port:
            object.__setattr__(self, "reuse_port", True)
        return self


FLAGS = tuple(name for name in Settings.model_fields if name != "token")


def _flag_of(name: str) -> str:
    field = Settings.model_fields.get(name)
    return (flag_of(field, name) if field else None) or name


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="HTTP/SSE gateway for the MOEX result topics"
    )
    add_flags(parser, Settings, FLAGS)
    args = parser.parse_args(argv)
    try:
        return Settings(**given(args, Settings))
    except ValidationError as exc:
        problems = "; ".join(
            f"{_flag_of(str(e['loc'][0]))} {e['msg'].lower()}" for e in exc.errors()
        )
        parser.error(problems)
