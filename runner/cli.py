"""Command line of the runner.

python -m runner run      [--fresh] [--only a,b] [--dry-run] [--jobmanager HOST:PORT]
python -m runner check    validate sql/ with sqlglot and Flink's planner; start nothing
python -m runner replay   --trades F [--orderbook F] [--status F] --out DIR
python -m runner reload   validate, then stop the running job with a savepoint and resubmit
python -m runner backtest --strategy NAME[,NAME|all] --trades F [--orderbook F] --out DIR
python -m runner warm     keep one JVM warm: later replays and backtests of <= 100 K trades run in it
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from moex.settings import add_flags, given
from runner import live, warm
from runner.backtest import backtest
from runner.catalog import catalog, write_catalog
from runner.flink_env import latest_checkpoint, streaming_config
from runner.plan import PlanError
from runner.reload import reload
from runner.replay import replay
from runner.settings import Settings
from runner.validation import broker_reachable, report, topic_errors, validate


def _settings(args: argparse.Namespace) -> Settings:
    """The settings, read once: the flags given override the environment and the defaults."""
    return Settings(**given(args, Settings))


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        _, plan, _ = validate(settings)
    except PlanError as exc:
        return report(exc.errors)
    # A broker named on the command line must answer; the default one is checked if it runs.
    if args.bootstrap or broker_reachable(settings.bootstrap):
        errors = topic_errors(plan, settings, create=False)
        if errors:
            return report(errors)
        topics = f"; sink topics exist or can be created on {settings.bootstrap}"
    else:
        topics = f"; no broker at {settings.bootstrap}: sink topics not checked (--bootstrap)"
    print(f"runner: {len(plan.files)} files, {len(plan.outputs)} outputs: all valid{topics}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.jobmanager:
        # The TaskManagers start the Python workers. Otherwise PyFlink, seeing a local target
        # while planning, serves them from this process ("loopback"), which exits after submit.
        os.environ["_python_worker_execution_mode"] = "process"
    restore = None if settings.fresh else latest_checkpoint(settings.checkpoint_dir)
    try:
        t_env, plan, compiled = validate(settings)
    except PlanError as exc:
        return report(exc.errors)
    write_catalog(catalog(t_env, plan, settings), settings.catalog_path)
    if args.dry_run:
        print(compiled.statement_set.explain())
        print(f"runner: dry run, {len(plan.outputs)} outputs; catalog in {settings.catalog_path}")
        return 0
    # Every sink topic exists before the job starts: a sink without its topic fails the whole
    # job in a restart loop ("Topic ... not present in metadata after 60000 ms").
    errors = topic_errors(plan, settings, create=True)
    if errors:
        return report(errors)
    if settings.jobmanager:
        if args.checkpoint_dir:
            # A cluster on this machine (make up-cluster): the folder is shared by the
            # JobManager, the TaskManagers and this process, so a resubmission resumes from
            # the newest retained checkpoint there.
            remote = streaming_config(settings, restore)
        else:
            # The cluster owns checkpoint storage and the state backend (compose:
            # FLINK_PROPERTIES, /checkpoints shared by JobManager and TaskManagers); this
            # container's .run/ is not visible there.
            remote = streaming_config(settings, None)
            for key in ("execution.checkpointing.dir", "state.backend.type"):
                remote.pop(key)
        # Python workers on the TaskManagers import udfs/ from here (compose: /opt/moex).
        remote["python.pythonpath"] = settings.remote_pythonpath
        for key, value in remote.items():
            t_env.get_config().set(key, value)
        host, _, port = settings.jobmanager.partition(":")
        t_env.get_config().set("execution.target", "remote")
        t_env.get_config().set("rest.address", host)
        t_env.get_config().set("rest.port", port or "8081")
        job_client = compiled.submit()
        resumed = f", resumed from {restore}" if args.checkpoint_dir and restore else ""
        print(f"runner: job {job_client.get_job_id()} submitted to {settings.jobmanager}{resumed}")
        return 0

    return live.serve(settings, t_env, plan, compiled, restore)


def cmd_replay(args: argparse.Namespace) -> int:
    code = warm.try_warm("replay", args.argv, args.trades)
    if code is not None:
        return code
    settings = _settings(args)
    return replay(settings, args)


def cmd_warm(args: argparse.Namespace) -> int:
    return warm.serve(_settings(args))


def cmd_backtest(args: argparse.Namespace) -> int:
    code = warm.try_warm("backtest", args.argv, args.trades)
    if code is not None:
        return code
    return backtest(_settings(args), args)


def cmd_reload(args: argparse.Namespace) -> int:
    return reload(_settings(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        add_flags(p, Settings, ("sql_dir", "bootstrap", "topic_prefix", "only", "catalog_path"))
        add_flags(p, Settings, ("watermark_delay_ms", "idle_timeout_ms", "status_idle_timeout_ms"))
        add_flags(p, Settings, ("parallelism", "jvm_heap_mb", "topic_replication_factor"))

    run = sub.add_parser("run", help="validate sql/ and run every output as one job")
    common(run)
    run.add_argument("--dry-run", action="store_true", help="print the plan, start nothing")
    add_flags(
        run,
        Settings,
        ("fresh", "jobmanager", "txn_prefix", "group_id", "checkpoint_dir")
        + ("checkpoint_interval_ms", "rest_port", "pid_file"),
    )

    check = sub.add_parser("check", help="validate sql/; start nothing")
    common(check)

    rep = sub.add_parser("replay", help="run the same SQL over files (backtest)")
    common(rep)
    rep.add_argument("--trades", required=True, type=Path)
    rep.add_argument("--orderbook", type=Path)
    rep.add_argument("--status", type=Path)
    rep.add_argument("--out", required=True, type=Path)

    warm_jvm = sub.add_parser(
        "warm", help="keep a JVM warm: later replays/backtests of <= 100 K trades start in seconds"
    )
    add_flags(warm_jvm, Settings, ("jvm_heap_mb",))

    bt = sub.add_parser("backtest", help="replay files through strategies; write P&L and report")
    common(bt)
    bt.add_argument("--strategy", required=True, help="a sql/strategies/ name, several, or all")
    bt.add_argument("--trades", required=True, type=Path)
    bt.add_argument("--orderbook", type=Path)
    bt.add_argument("--status", type=Path)
    bt.add_argument("--out", required=True, type=Path)
    add_flags(bt, Settings, ("strategy_commission", "strategy_slippage", "strategy_capital"))

    rel = sub.add_parser("reload", help="validate edits, then resubmit from a savepoint")
    common(rel)  # accepted for symmetry; the running runner's own sql dir and outputs are used
    # --rest-port is accepted and ignored: the running runner records its port in the pid file.
    add_flags(rel, Settings, ("rest_port", "pid_file"))

    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv or sys.argv[1:])])
    args.argv = list(sys.argv[1:] if argv is None else argv)[1:]  # after the command's name
    handler = {
        "run": cmd_run,
        "check": cmd_check,
        "replay": cmd_replay,
        "reload": cmd_reload,
        "backtest": cmd_backtest,
        "warm": cmd_warm,
    }
    return handler[args.command](args)
