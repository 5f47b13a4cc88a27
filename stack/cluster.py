"""`make up-cluster`: the scale-out layout as plain processes on this machine, no Docker.

    python -m stack.cluster          3 Kafka brokers (replication 3, min.insync.replicas 2),
                                     topics, a Flink session cluster (JobManager + 2
                                     TaskManagers), the job at parallelism 2, producer, gateway
    python -m stack.cluster layout   print the layout without starting anything
    python -m stack.cluster sql      Flink's SQL client on the running cluster, sql/'s tables
                                     declared (`make sql`); --file F runs F and exits

`make down`, `make status` and `make logs` work on it as on `make up` (stack/up.py's process
groups, pid files and logs in .run/). The Flink processes are the apache-flink package's own
bin/ scripts with a generated FLINK_CONF_DIR and a lib/ folder of links (the package's jars,
flink-python and the Kafka connector), so nothing in site-packages is changed.

Over 300 lines: the layout (ports, Flink settings, how each process starts) is read as one
piece; the processes themselves are stack/components.py's, the SQL client (`make sql`) stays
here because it is started from the same generated Flink files.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from moex.paths import FLINK_JARS, ROOT, RUN, connector_jar
from runner.flink_rest import rest as rest_json
from runner.flink_rest import running_job
from stack.components import (
    PY,
    Component,
    app_env,
    gateway_component,
    http_ok,
    producer_component,
    supervise,
)
from stack.kafka import free_port, new_cluster_id, port_open
from stack.proc import group_alive, wait_for
from stack.topics import create_topics
from stack.up import make_up_watermark_delay, producer_start

# rest_json and running_job are imported from here by tests/test_faults_cluster.py.
__all__ = ["rest_json", "running_job"]

BROKERS = 3
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
TASKMANAGERS = 2
PARALLELISM = 2
# Resident budget of the whole cluster (issue #12): brokers, Flink JVMs with their Python
# workers, producer and gateway together.
BUDGET_MIB = 6 * 1024
BROKER_HEAP_MB = int(os.environ.get("KAFKA_HEAP_MB", 320))

# The Flink settings of the session cluster that compose/docker-compose.yml repeats in its
# FLINK_PROPERTIES (tests/test_compose.py checks that they agree).
FLINK_SHARED_SETTINGS = {
    "taskmanager.numberOfTaskSlots": "2",
    "parallelism.default": str(PARALLELISM),
    "execution.checkpointing.interval": "5 s",
    "execution.checkpointing.mode": "EXACTLY_ONCE",
    "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    "execution.checkpointing.num-retained": "3",
    "restart-strategy.type": "exponential-delay",
    "restart-strategy.exponential-delay.initial-backoff": "1 s",
    "restart-strategy.exponential-delay.max-backoff": "30 s",
}

# Hard memory caps: two cores and other Flink users on this machine. The TaskManager's Python
# workers (the pandas UDAFs) live outside the JVM, in its managed memory budget.
FLINK_MEMORY_SETTINGS = {
    "jobmanager.memory.process.size": "640m",
    "jobmanager.memory.jvm-metaspace.size": "160m",
    "jobmanager.memory.jvm-overhead.min": "64m",
    "jobmanager.memory.off-heap.size": "64m",
    "taskmanager.memory.process.size": "1024m",
    "taskmanager.memory.jvm-metaspace.size": "192m",
    "taskmanager.memory.jvm-overhead.min": "64m",
    "taskmanager.memory.jvm-overhead.max": "128m",
    "taskmanager.memory.framework.heap.size": "64m",
    "taskmanager.memory.framework.off-heap.size": "64m",
    "taskmanager.memory.network.min": "32m",
    "taskmanager.memory.network.max": "64m",
    "taskmanager.memory.managed.size": "256m",
}


def pyflink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


@dataclass
class ClusterPorts:
    """Fixed ports for `make up-cluster`, each overridable (tests pass free ones)."""

    kafka: list[int] = field(default_factory=lambda: _ports("KAFKA_PORTS", [9092, 9094, 9096]))
    kafka_controller: list[int] = field(
        default_factory=lambda: _ports("KAFKA_CONTROLLER_PORTS", [9093, 9095, 9097])
    )
    flink: int = int(os.environ.get("FLINK_REST_PORT", 8081))
    jobmanager_rpc: int = int(os.environ.get("FLINK_RPC_PORT", 6123))
    gateway: int = int(os.environ.get("GATEWAY_PORT", 8000))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.kafka)

    @classmethod
    def free(cls) -> ClusterPorts:
        return cls(
            kafka=[free_port() for _ in range(BROKERS)],
            kafka_controller=[free_port() for _ in range(BROKERS)],
            flink=free_port(),
            jobmanager_rpc=free_port(),
            gateway=free_port(),
        )


def _ports(env: str, default: list[int]) -> list[int]:
    value = os.environ.get(env)
    ports = [int(p) for p in value.split(",")] if value else default
    if len(ports) != BROKERS:
        raise ValueError(f"{env} needs {BROKERS} ports, got {value}")
    return ports


class Layout:
    """Where the cluster keeps its files, and how each process is started."""

    def __init__(self, ports: ClusterPorts, run_dir: Path = RUN) -> None:
        self.ports = ports
        self.run = run_dir
        self.home = run_dir / "cluster"

    @property
    def checkpoint_dir(self) -> Path:
        """Shared by the JobManager and both TaskManagers (one machine, one folder)."""
        return self.home / "checkpoints"

    @property
    def flink_conf_dir(self) -> Path:
        return self.home / "flink-conf"

    @property
    def flink_lib_dir(self) -> Path:
        return self.home / "flink-lib"

    @property
    def flink_opt_dir(self) -> Path:
        return self.home / "flink-opt"

    def cluster_id(self) -> str:
        """The Kafka cluster id, kept with the data so restarts find the same cluster."""
        path = self.home / "kafka-cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def flink_settings(self) -> dict[str, str]:
        packaged = flat(yaml_load(pyflink_home() / "conf" / "config.yaml"))
        return {
            # The packaged JVM options (--add-opens ... that Flink needs on Java 17), and temp
            # files (the web upload folder, the Python workers' folder) kept in the layout, not
            # in /tmp where they would outlive the cluster.
            "env.java.opts.all": (
                f"{packaged['env.java.opts.all']} -Djava.io.tmpdir={self.home / 'tmp'}"
            ),
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": str(self.ports.jobmanager_rpc),
            "jobmanager.bind-host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.host": "127.0.0.1",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": str(self.ports.flink),
            "jobmanager.execution.failover-strategy": "region",
            # A parallel-2 job takes one slot on each TaskManager, not both on one.
            "taskmanager.load-balance.mode": "slots",
            "execution.checkpointing.dir": self.checkpoint_dir.resolve().as_uri(),
            "state.backend.type": "hashmap",
            "io.tmp.dirs": str(self.home / "tmp"),
            "env.pid.dir": str(self.home / "pids"),
            "python.executable": sys.executable,
            **FLINK_SHARED_SETTINGS,
            **FLINK_MEMORY_SETTINGS,
        }

    def write_flink_files(self) -> None:
        """FLINK_CONF_DIR (config.yaml + the packaged log4j files) and FLINK_LIB_DIR (links)."""
        home = pyflink_home()
        conf = self.flink_conf_dir
        conf.mkdir(parents=True, exist_ok=True)
        for name in ("log4j-console.properties", "log4j-cli.properties", "logback-console.xml"):
            (conf / name).write_text((home / "conf" / name).read_text())
        # Flat keys, one per line: Flink 2's config.yaml accepts them and they diff well.
        (conf / "config.yaml").write_text(
            "".join(f"{key}: {json.dumps(value)}\n" for key, value in self.flink_settings().items())
        )
        lib = self.flink_lib_dir
        lib.mkdir(parents=True, exist_ok=True)
        for old in lib.glob("*.jar"):
            old.unlink()
        jars = [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python-*.jar")]
        for jar in [*jars, connector_jar()]:
            (lib / jar.name).symlink_to(jar.resolve())
        # opt/: the SQL client (`make sql`) with the SQL gateway classes it needs.
        opt = self.flink_opt_dir
        opt.mkdir(parents=True, exist_ok=True)
        for old in opt.glob("*.jar"):
            old.unlink()
        gateway = sorted(FLINK_JARS.glob("flink-sql-gateway-*.jar"))
        if not gateway:
            raise FileNotFoundError(f"no flink-sql-gateway jar in {FLINK_JARS}: run `make jars`")
        for jar in [*(home / "opt").glob("*.jar"), gateway[-1]]:
            (opt / jar.name).symlink_to(jar.resolve())
        for folder in ("tmp", "pids", "checkpoints"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)

    def flink_env(self) -> dict[str, str]:
        return {
            "FLINK_CONF_DIR": str(self.flink_conf_dir),
            "FLINK_LIB_DIR": str(self.flink_lib_dir),
            "FLINK_OPT_DIR": str(self.flink_opt_dir),
            "FLINK_LOG_DIR": str(self.run / "logs" / "flink"),
            "FLINK_PID_DIR": str(self.home / "pids"),
            # The heap comes from the memory settings above, not from a caller's JVM_ARGS.
            "JVM_ARGS": "",
        }

    def broker(self, index: int) -> Component:
        node = index + 1
        voters = ",".join(f"{n + 1}@{port}" for n, port in enumerate(self.ports.kafka_controller))
        return Component(
            f"kafka-{node}",
            [
                PY,
                "-m",
                "stack.kafka",
                "start",
                "--node-id",
                str(node),
                "--voters",
                voters,
                "--cluster-id",
                self.cluster_id(),
                "--port",
                str(self.ports.kafka[index]),
                "--controller-port",
                str(self.ports.kafka_controller[index]),
                "--data-dir",
                str(self.home / f"kafka-{node}"),
                "--heap-mb",
                str(BROKER_HEAP_MB),
            ],
            lambda: broker_ready(self.ports.kafka[index]),
            300,  # a restart after kill -9 recovers its logs first: minutes on a busy machine
            run_dir=self.run,
        )

    def jobmanager(self) -> Component:
        return Component(
            "jobmanager",
            ["bash", str(pyflink_home() / "bin" / "jobmanager.sh"), "start-foreground"],
            lambda: http_ok(f"http://127.0.0.1:{self.ports.flink}/overview"),
            120,
            self.flink_env(),
            run_dir=self.run,
        )

    def taskmanager(self, index: int) -> Component:
        name = f"taskmanager-{index + 1}"
        return Component(
            name,
            [
                "bash",
                str(pyflink_home() / "bin" / "taskmanager.sh"),
                "start-foreground",
                f"-Dtaskmanager.resource-id={name}",
            ],
            lambda: name in registered_taskmanagers(self.ports.flink),
            120,
            self.flink_env(),
            run_dir=self.run,
        )

    def app_env(self) -> dict[str, str]:
        return app_env(self.ports.bootstrap, self.run)

    def submit_command(self) -> list[str]:
        return [
            PY,
            "-m",
            "runner",
            "run",
            "--jobmanager",
            f"127.0.0.1:{self.ports.flink}",
            "--bootstrap",
            self.ports.bootstrap,
            "--checkpoint-dir",
            str(self.checkpoint_dir),
            "--catalog",
            str(self.run / "catalog.json"),
        ]

    def submit_env(self) -> dict[str, str]:
        return {
            **self.app_env(),
            "MOEX_PARALLELISM": str(PARALLELISM),
            "MOEX_WATERMARK_DELAY_MS": make_up_watermark_delay(),
            # The TaskManagers' Python workers import udfs/ from this checkout.
            "MOEX_REMOTE_PYTHONPATH": str(ROOT),
        }

    def producer(self, producer_args: list[str]) -> Component:
        return producer_component(self.ports.bootstrap, producer_args, self.run, timeout_s=60)

    def gateway(self) -> Component:
        return gateway_component(self.ports.gateway, self.ports.bootstrap, self.run)

    def describe(self) -> str:
        p = self.ports
        brokers = "\n".join(
            f"  kafka-{n + 1}     127.0.0.1:{p.kafka[n]} (controller :{p.kafka_controller[n]}), "
            f"heap {BROKER_HEAP_MB} MiB, data {shown(self.home / f'kafka-{n + 1}')}"
            for n in range(BROKERS)
        )
        mem = FLINK_MEMORY_SETTINGS
        return f"""{brokers}
               replication 3, min.insync.replicas 2, unclean leader election off
  jobmanager  http://127.0.0.1:{p.flink}/ (rpc :{p.jobmanager_rpc}), process {mem["jobmanager.memory.process.size"]}
  taskmanager x{TASKMANAGERS}, {FLINK_SHARED_SETTINGS["taskmanager.numberOfTaskSlots"]} slots each, process {mem["taskmanager.memory.process.size"]}
  job         parallelism {PARALLELISM}, checkpoints every {FLINK_SHARED_SETTINGS["execution.checkpointing.interval"]} in {shown(self.checkpoint_dir)}
  producer    acks=all, idempotent, to {p.bootstrap}
  dashboard   http://127.0.0.1:{p.gateway}/
  logs        make logs   (files in {shown(self.run / "logs")})"""


def shown(path: Path) -> str:
    """A path as a user of this checkout types it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def flat(tree: dict, prefix: str = "") -> dict[str, str]:
    """Nested YAML keys as Flink's dotted names."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def broker_ready(port: int) -> bool:
    from kafka.admin import KafkaAdminClient

    if not port_open("127.0.0.1", port):
        return False
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=5000)
    try:
        return len(admin.describe_cluster()["brokers"]) > 0
    finally:
        admin.close()


def registered_taskmanagers(port: int) -> list[str]:
    return [tm["id"] for tm in rest_json(port, "/taskmanagers", timeout=3)["taskmanagers"]]


def submit_job(layout: Layout, extra_args: list[str] | None = None, timeout_s: float = 600) -> str:
    """`runner run --jobmanager`: plans sql/, submits, returns the job id; the cluster runs it.

    A resubmission resumes from the newest retained checkpoint in the shared folder."""
    log = layout.run / "logs" / "job-submit.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        result = subprocess.run(
            layout.submit_command() + (extra_args or []),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **layout.submit_env()},
            timeout=timeout_s,
        )
    text = log.read_bytes()[start:].decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"job submission failed ({result.returncode}):\n{text[-3000:]}")
    return text.rsplit("runner: job ", 1)[1].split()[0]


class LocalCluster:
    """The brokers and the Flink session cluster of a Layout, each a process group that can be
    killed (SIGKILL, as a power cut) and restarted: the fault tests' handle on the cluster."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.brokers = [layout.broker(n) for n in range(BROKERS)]
        self.jobmanager = layout.jobmanager()
        self.taskmanagers = [layout.taskmanager(n) for n in range(TASKMANAGERS)]

    @property
    def components(self) -> list[Component]:
        return [*self.brokers, self.jobmanager, *self.taskmanagers]

    def start(self) -> None:
        self.layout.write_flink_files()
        for component in [*self.brokers, self.jobmanager]:
            component.start()
        for component in [*self.brokers, self.jobmanager]:
            component.wait_ready()
        for component in self.taskmanagers:
            component.start()
        for component in self.taskmanagers:
            component.wait_ready()

    def kill(self, component: Component) -> None:
        component.kill()

    def restart(self, component: Component, wait: bool = True) -> None:
        component.start()
        if wait:
            component.wait_ready()

    def rss_mib(self) -> dict[str, float]:
        return {c.name: c.rss_mib() for c in self.components if c.alive()}

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop(timeout_s=10)


def up_cluster(ports: ClusterPorts, producer_args: list[str], run_dir: Path = RUN) -> int:
    layout = Layout(ports, run_dir)
    up_pid = run_dir / "up.pid"
    if up_pid.exists() and group_alive(int(up_pid.read_text())):
        print("make up is already running (make down stops it)", file=sys.stderr)
        return 1
    taken = [
        port
        for port in [*ports.kafka, *ports.kafka_controller, ports.flink, ports.gateway]
        if port_open("127.0.0.1", port)
    ]
    if taken:
        print(f"ports {taken} are taken: stop what uses them, or `make down`", file=sys.stderr)
        return 1
    run_dir.mkdir(parents=True, exist_ok=True)
    up_pid.write_text(str(os.getpid()))
    layout.write_flink_files()
    print("make up-cluster: the layout\n" + layout.describe(), flush=True)
    started: list[Component] = []
    t0 = time.monotonic()

    def step(components: list[Component]) -> None:
        for component in components:
            component.start()
            started.append(component)
        for component in components:
            print(f"  {component.name:12s} starting ...", end="", flush=True)
            component.wait_ready()
            print(f" ready ({time.monotonic() - t0:.0f}s)", flush=True)

    def stages() -> None:
        # The brokers form their quorum together; Flink needs nothing of Kafka to start.
        step([layout.broker(n) for n in range(BROKERS)] + [layout.jobmanager()])
        created = create_topics(ports.bootstrap, REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)
        print(
            f"  topics       {len(created)} created (replication {REPLICATION_FACTOR}, "
            f"min.insync.replicas {MIN_INSYNC_REPLICAS})",
            flush=True,
        )
        step([layout.taskmanager(n) for n in range(TASKMANAGERS)])
        print("  job          submitting (runner run --jobmanager) ...", end="", flush=True)
        job_id = submit_job(layout)
        wait_for(lambda: running_job(ports.flink), 300, "the job", 0.5, retry_on=(Exception,))
        print(f" {job_id} running ({time.monotonic() - t0:.0f}s)", flush=True)
        producer = layout.producer(producer_args)
        producer.command += producer_start(ports.bootstrap, producer_args)
        step([producer, layout.gateway()])
        print(
            f"\nMOEX streaming analytics runs on the local cluster "
            f"({time.monotonic() - t0:.0f}s); `make status` shows memory, "
            f"Ctrl-C or `make down` stops it.",
            flush=True,
        )

    return supervise(started, stages, up_pid)


def shell_init(bootstrap: str, topic_prefix: str = "moex.") -> str:
    """The SQL client's init file: sql/'s DDL as the job runs it (the runner's plan and
    placeholder substitution), every input and output table readable from the start."""
    from runner.connectors import Connectors, substitute
    from runner.plan import load_plan
    from runner.settings import Settings

    class ShellConnectors(Connectors):
        """Read every table from its first offset, read_committed, under a consumer group of
        its own (the job's committed offsets stay untouched); output tables become readable."""

        def source(self, name: str) -> dict[str, str]:
            opts = super().source(name)
            opts.pop("properties.auto.offset.reset", None)
            return {**opts, "scan.startup.mode": "earliest-offset", **SHELL_READ}

        def sink(self, name: str, guarantee: str) -> dict[str, str]:
            opts = super().sink(name, guarantee)
            return {**opts, "scan.startup.mode": "earliest-offset", **SHELL_READ}

    settings = Settings()
    settings.bootstrap = bootstrap
    settings.topic_prefix = topic_prefix
    plan = load_plan(settings)
    connectors = ShellConnectors(settings)
    outputs = {o.name: o for o in plan.outputs}
    statements = [
        f"SET '{key}' = '{value}';"
        for key, value in {
            "execution.target": "remote",
            "sql-client.execution.result-mode": "tableau",
            "table.local-time-zone": "UTC",
            "pipeline.jars": connector_jar().as_uri(),
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "python.pythonpath": str(ROOT),
        }.items()
    ]
    for stmt in plan.ddl:
        output = outputs.get(stmt.name) if stmt.kind == "create_table" else None
        if output is not None and stmt.name == stmt.path.stem:
            statements.append(substitute(stmt, connectors, settings, output.name, output.guarantee))
            if output.twin:
                twin = replace(stmt, text=stmt.renamed(output.live_name), name=output.live_name)
                statements.append(
                    substitute(twin, connectors, settings, output.live_name, "at-least-once")
                )
        else:
            statements.append(substitute(stmt, connectors, settings, None, None))
    return "\n\n".join(s.rstrip().rstrip(";") + ";" for s in statements) + "\n"


SHELL_READ = {
    "properties.group.id": "moex-sql-shell",
    "properties.isolation.level": "read_committed",
}


def sql_client(
    layout: Layout, query_file: Path | None = None, topic_prefix: str = "moex."
) -> tuple[list[str], dict[str, str]]:
    """Command and environment of Flink's own SQL client (the package's bin/sql-client.sh) on
    the layout's cluster, with an init file declaring sql/'s tables."""
    if not layout.flink_opt_dir.exists():
        layout.write_flink_files()
    init = layout.home / "sql-init.sql"
    init.write_text(shell_init(layout.ports.bootstrap, topic_prefix=topic_prefix))
    command = ["bash", str(pyflink_home() / "bin" / "sql-client.sh"), "embedded", "-i", str(init)]
    if query_file is not None:
        command += ["-f", str(query_file)]
    env = {
        **os.environ,
        **layout.flink_env(),
        "JVM_ARGS": "-Xmx384m",
        # The client asks Python for the UDAFs' signatures: it imports udfs/ from here.
        "PYTHONPATH": str(ROOT),
    }
    return command, env


def sql_shell(ports: ClusterPorts, query_file: Path | None, run_dir: Path = RUN) -> int:
    """`make sql`: the SQL client, interactive (or running --file), on the running cluster."""
    if not port_open("127.0.0.1", ports.flink):
        print(
            f"no Flink cluster answers on :{ports.flink}: `make up-cluster` first", file=sys.stderr
        )
        return 1
    command, env = sql_client(Layout(ports, run_dir), query_file)
    return subprocess.call(command, cwd=ROOT, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.cluster")
    parser.add_argument("command", nargs="?", default="up", choices=["up", "layout", "sql"])
    parser.add_argument("--file", type=Path, help="sql: run these statements, then exit")
    parser.add_argument(
        "--producer-args",
        default=os.environ.get("PRODUCER_ARGS", "--accelerate 10 --anomaly-rate 0.05"),
        help="options for `python -m producer synthetic` (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.command == "layout":
        print(Layout(ClusterPorts()).describe())
        return 0
    if args.command == "sql":
        return sql_shell(ClusterPorts(), args.file)
    return up_cluster(ClusterPorts(), args.producer_args.split())


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
