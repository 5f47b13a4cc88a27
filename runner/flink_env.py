"""The Flink side of a start: the JVM's limits, the TableEnvironment and its configuration."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from moex.paths import ROOT, RUN, connector_jar
from runner.settings import Settings


def prepare_jvm_environment(settings: Settings, quick_start: bool = False) -> None:
    """Cap the JVM and keep its temp files and logs in .run/ (must run before PyFlink starts).

    quick_start: JIT-compile with C1 only. Planning a job is mostly run-once code, and on 2
    cores the C2 compiler threads took half the CPU of a short replay (docs/performance.md,
    Engine); a long-running job keeps C2 for its steady state.
    """
    tmp = RUN / "tmp"
    logs = RUN / "logs" / "flink"
    tmp.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    # Metaspace: one JVM may plan and run many jobs (the test session runs ~60, each MiniCluster
    # loading its own Pekko and generated classes); 384m ran out after ~50 of them.
    os.environ.setdefault(
        "JVM_ARGS",
        f"-Xmx{settings.jvm_heap_mb}m -Xms256m -XX:MaxMetaspaceSize=1024m "
        f"-XX:+UseG1GC -Djava.io.tmpdir={tmp}"
        + (" -XX:TieredStopAtLevel=1" if quick_start else ""),
    )
    os.environ.setdefault("FLINK_LOG_DIR", str(logs))
    # Python workers import udfs/ from the repository root.
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def create_table_env(
    settings: Settings,
    streaming: bool = True,
    extra: dict[str, str] | None = None,
    quick_start: bool = False,
):
    prepare_jvm_environment(settings, quick_start)
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env_settings = (
        EnvironmentSettings.in_streaming_mode()
        if streaming
        else EnvironmentSettings.in_batch_mode()
    )
    t_env = TableEnvironment.create(env_settings)
    config = t_env.get_config()
    for key, value in base_config(settings).items():
        config.set(key, value)
    for key, value in (extra or {}).items():
        config.set(key, value)
    return t_env


def base_config(settings: Settings) -> dict[str, str]:
    return {
        "pipeline.name": settings.job_name,
        "pipeline.jars": connector_jar().as_uri(),
        "parallelism.default": str(settings.parallelism),
        "table.local-time-zone": "UTC",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.fn-execution.bundle.time": str(settings.python_bundle_time_ms),
        # The pandas OVER operator counts every row of every window it sends (up to 300 per
        # candle) towards the bundle; results wait at most bundle.time either way.
        "python.fn-execution.bundle.size": "1000",
        # Views shared by several outputs (bars, indicator_series_1m) are planned once: without
        # this the planner prunes each use differently and runs the Python UDAFs twice.
        "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": str(settings.rest_port),
        "taskmanager.memory.managed.size": "256m",
        "taskmanager.numberOfTaskSlots": "4",
    }


def streaming_config(settings: Settings, restore_from: Path | None) -> dict[str, str]:
    cfg = {
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.dir": settings.checkpoint_dir.resolve().as_uri(),
        "execution.checkpointing.num-retained": "3",
        "state.backend.type": "hashmap",
        # Chained operators hand rows on without a deep copy (the order-book rows carry 2 x 10
        # DECIMAL pairs): live A/B, 2 pairs at 10 K trades + 10 K books/s, the books' lag grew
        # 19-29 % of the rate instead of 27-39 %, 0.1 core less (docs/performance.md). Flink's
        # SQL operators copy what they keep; replays measured no gain and keep the default.
        "pipeline.object-reuse": "true",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        # Latency of every event-time result (issue #7): windows close at the first watermark
        # past their end, and watermarks are emitted every this often (Flink's default 200 ms).
        "pipeline.auto-watermark-interval": "50 ms",
        # A network buffer between tasks is flushed when full or after this long (default
        # 100 ms): a row crosses 5-7 exchanges between source and sink in this job.
        "execution.buffer-timeout.interval": "10 ms",
    }
    if restore_from is not None:
        cfg["execution.state-recovery.path"] = restore_from.resolve().as_uri()
        # Outputs added since the checkpoint have no state there: start them from scratch.
        cfg["execution.state-recovery.ignore-unclaimed-state"] = "true"
    return cfg


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest completed, retained checkpoint (a chk-N folder holding _metadata)."""
    if not checkpoint_dir.exists():
        return None
    done = [m.parent for m in checkpoint_dir.glob("*/chk-*/_metadata")]
    done += [m.parent for m in checkpoint_dir.glob("savepoint-*/_metadata")]
    return max(done, key=lambda p: p.stat().st_mtime) if done else None
