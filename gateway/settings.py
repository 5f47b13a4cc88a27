"""Gateway settings: command-line flags whose defaults come from the environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from moex.paths import RUN

DEFAULT_CATALOG = RUN / "catalog.json"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    # None runs the HTTP side alone (route tests); /healthz then reports the broker unreachable.
    bootstrap: str | None = "127.0.0.1:9092"
    catalog: Path = DEFAULT_CATALOG
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    heartbeat_s: float = 15.0
    max_clients: int = 200
    # Events waiting for one client; beyond it the client is dropped and reconnects.
    client_queue: int = 5000
    send_timeout_s: float = 10.0
    buffer_rows: int = 5000  # rows kept per (stream, ticker)
    backfill: int = 5000  # records read back per partition at start
    replay_max: int = 50000  # records read from Kafka per partition for one resume
    log_level: str = "info"
    workers: int = 1  # processes sharing the port (SO_REUSEPORT), each reading Kafka itself
    reuse_port: bool = False  # bind with SO_REUSEPORT (set by the supervisor for its workers)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def auto_workers(cores: int | None = None) -> int:
    """Half the cores: `make up` runs Kafka and the Flink job on the same machine, and they need
    the other half (1 worker on 2 cores, 2 on 4, 4 on 8). One worker serves 1,000 clients at
    20 rows/s in well under one core (docs/capacity.md)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0))
    return max(1, cores // 2)


def _workers(text: str) -> int:
    if text == "auto":
        return auto_workers()
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1 or 'auto'")
    return value


def parse_args(argv: list[str] | None = None) -> Settings:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="HTTP/SSE gateway for the MOEX result topics"
    )
    add = parser.add_argument
    add(
        "--host",
        default=_env("GATEWAY_HOST", defaults.host),
        help="bind address (loopback by default)",
    )
    add("--port", type=int, default=int(_env("GATEWAY_PORT", str(defaults.port))))
    add("--bootstrap", default=_env("KAFKA_BOOTSTRAP", str(defaults.bootstrap)))
    add("--catalog", type=Path, default=Path(_env("MOEX_CATALOG", str(defaults.catalog))))
    add(
        "--heartbeat",
        type=float,
        default=float(_env("GATEWAY_HEARTBEAT_S", str(defaults.heartbeat_s))),
        help="seconds between SSE heartbeats",
    )
    add(
        "--max-clients",
        type=int,
        default=int(_env("GATEWAY_MAX_CLIENTS", str(defaults.max_clients))),
    )
    add(
        "--client-queue",
        type=int,
        default=int(_env("GATEWAY_CLIENT_QUEUE", str(defaults.client_queue))),
    )
    add(
        "--send-timeout",
        type=float,
        default=float(_env("GATEWAY_SEND_TIMEOUT_S", str(defaults.send_timeout_s))),
    )
    add(
        "--buffer-rows",
        type=int,
        default=int(_env("GATEWAY_BUFFER_ROWS", str(defaults.buffer_rows))),
    )
    add("--backfill", type=int, default=int(_env("GATEWAY_BACKFILL", str(defaults.backfill))))
    add("--replay-max", type=int, default=int(_env("GATEWAY_REPLAY_MAX", str(defaults.replay_max))))
    add(
        "--cors-origins",
        default=_env("GATEWAY_CORS_ORIGINS", ""),
        help="comma-separated origins allowed by CORS (none by default)",
    )
    add("--log-level", default=_env("GATEWAY_LOG_LEVEL", defaults.log_level))
    add(
        "--workers",
        type=_workers,
        default=_env("GATEWAY_WORKERS", str(defaults.workers)),
        help="gateway processes sharing the port, or 'auto' (half the cores); "
        "each reads every topic and keeps its own --max-clients",
    )
    add("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("heartbeat", "send_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    for name in ("client_queue", "buffer_rows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return Settings(
        host=args.host,
        port=args.port,
        bootstrap=args.bootstrap or None,
        catalog=args.catalog,
        # The token comes from the environment only: a flag would show it in `ps`.
        token=os.environ.get("GATEWAY_TOKEN") or None,
        cors_origins=tuple(o.strip() for o in args.cors_origins.split(",") if o.strip()),
        heartbeat_s=args.heartbeat,
        max_clients=args.max_clients,
        client_queue=args.client_queue,
        send_timeout_s=args.send_timeout,
        buffer_rows=args.buffer_rows,
        backfill=max(0, args.backfill),
        replay_max=max(1, args.replay_max),
        log_level=args.log_level,
        workers=args.workers,
        reuse_port=args.reuse_port or args.workers > 1,
    )
