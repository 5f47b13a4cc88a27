"""`moex <command> [options]`: one command for the whole platform.

Each subcommand hands the rest of the command line to the stage that owns it, so its options and
`--help` are the stage's own (`moex replay --help` is `python -m runner replay --help`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str  # holds `main(argv) -> int`
    help: str
    prefix: tuple[str, ...] = ()  # put before the user's arguments

    def main(self) -> Callable[[list[str]], int]:
        return importlib.import_module(self.module).main


COMMANDS: dict[str, Command] = {
    "up": Command("stack.up", "run Kafka, the Flink job, the producer and the gateway", ("up",)),
    "down": Command("stack.up", "stop what `moex up` started", ("down",)),
    "status": Command("stack.up", "what runs, with resident memory per component", ("status",)),
    "topics": Command("stack.topics", "create or list the Kafka topics"),
    "kafka": Command("stack.kafka", "run a single local KRaft broker"),
    "produce": Command("producer.cli", "feed Kafka: synthetic session, file replay, live ISS"),
    "run": Command("runner.cli", "validate sql/ and run every output as one Flink job", ("run",)),
    "check": Command("runner.cli", "validate sql/ (file:line errors); start nothing", ("check",)),
    "replay": Command("runner.cli", "run the same sql/ over files into JSONL", ("replay",)),
    "warm": Command(
        "runner.cli",
        "keep one JVM warm: replays and backtests of <= 100 K trades start in seconds",
        ("warm",),
    ),
    "reload": Command("runner.cli", "resubmit the running job with edited sql/", ("reload",)),
    "backtest": Command(
        "runner.cli", "replay files through strategies: P&L and a report", ("backtest",)
    ),
    "gateway": Command("gateway.__main__", "serve the SSE API and the dashboard"),
    "cluster": Command(
        "stack.cluster", "scale-out: 3 brokers, JobManager + 2 TaskManagers", ("up",)
    ),
    "sql": Command("stack.cluster", "Flink's SQL client on the running cluster", ("sql",)),
    "bench": Command("benchmarks.cli", "measure throughput and latency beside peers"),
    "settings": Command(
        "moex.settings_doc", "every option: env variable, flag, value (--markdown)"
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: moex <command> [options]   (moex <command> --help for its options)", ""]
    lines += [f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"moex: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(command.main()([*command.prefix, *rest]) or 0)
