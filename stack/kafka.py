"""Kafka 4 brokers (KRaft, broker and controller in one JVM) run from the Maven jars.

    python -m stack.kafka start   # foreground, data in .run/kafka (survives restarts)
    python -m stack.kafka start --node-id 2 --voters 1@9093,2@9095,3@9095 --cluster-id ID ...

One node alone serves `make up` (127.0.0.1:9092) and the test session; three nodes sharing a
static controller quorum serve `make up-cluster` (stack/cluster.py) with replication 3.

Over 300 lines: the broker settings (one node, a quorum) and the launcher that writes them are
one concern, read together when a setting changes.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from moex.paths import KAFKA_JARS, ROOT, RUN
from stack.proc import WaitTimeout, kill_group, stop_group, wait_for

LOG4J_CONFIG = ROOT / "stack" / "kafka-log4j2.yaml"

# Settings without which a one-broker cluster cannot run transactions (the Flink exactly-once
# sink) or consumer groups: every internal topic must fit on one replica.
SINGLE_NODE_SETTINGS = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "min.insync.replicas": "1",
    "default.replication.factor": "1",
}

# A quorum of three: every partition (internal topics too) on all three nodes, a write
# acknowledged by at least two, and a replica that missed writes never elected leader (it
# would silently drop them). compose/docker-compose.yml is checked against these.
REPLICATED_SETTINGS = {
    "offsets.topic.replication.factor": "3",
    "offsets.topic.num.partitions": "5",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "transaction.state.log.num.partitions": "5",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "min.insync.replicas": "2",
    "default.replication.factor": "3",
    "unclean.leader.election.enable": "false",
}

# Settings every node has, alone or in a quorum.
COMMON_SETTINGS = {
    "num.partitions": "3",
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    # The Flink sink's transactions must fit under this (the connector's own default,
    # 1 h, does not: sql/ sets properties.transaction.timeout.ms to 10 min).
    "transaction.max.timeout.ms": "900000",
}


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is chosen.

    Chosen below the kernel's ephemeral range: a port the kernel hands out for outgoing
    connections (bind to port 0 picks from that range too) can be taken by a client between
    our check and the server's bind (a JobManager failed to bind its RPC port that way, ~1 start
    in 4 on the local cluster)."""
    low, _high = _ephemeral_range()
    first = max(1024, low - 12_000)
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port in random.sample(range(first, low), low - first):
            if len(ports) == count:
                break
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            ports.append(port)
        if len(ports) < count:
            raise OSError(f"no {count} free ports in {first}-{low - 1}")
        return ports
    finally:
        for sock in sockets:
            sock.close()


_handed_out: set[int] = set()


def free_port() -> int:
    """A free port not handed out before by this process (two calls never collide)."""
    while True:
        (port,) = free_ports(1)
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class KafkaBroker:
    """One KRaft node. `start()` formats storage once, launches the JVM and waits until ready.

    Alone by default; with `voters` ({node id: controller port}, this node's among them) and a
    shared `cluster_id` it is one node of a replicated quorum. Nodes of a quorum become ready
    only together: `launch()` each, then `wait_ready()` each.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        heap_mb: int = 512,
        log_file: Path | None = None,
        own_process_group: bool = True,
        node_id: int = 1,
        voters: dict[int, int] | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.node_id = node_id
        self.voters = voters or {node_id: controller_port}
        if self.voters.get(node_id) != controller_port:
            raise ValueError(f"node {node_id} must be a voter on port {controller_port}")
        self.cluster_id = cluster_id
        self.port = port
        self.controller_port = controller_port
        self.heap_mb = heap_mb
        self.log_file = log_file or self.data_dir / "kafka.out"
        self.process: subprocess.Popen | None = None
        # Tests give the JVM its own group; `python -m stack.kafka` keeps it in the caller's,
        # so stopping that group (make down) stops the JVM too.
        self.own_process_group = own_process_group

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def replicated(self) -> bool:
        return len(self.voters) > 1

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    def _classpath(self) -> str:
        if not any(KAFKA_JARS.glob("kafka_2.13-*.jar")):
            raise FileNotFoundError(f"no Kafka jars in {KAFKA_JARS}: run `make jars`")
        return str(KAFKA_JARS / "*")

    def write_config(self) -> None:
        if self.replicated:
            # A static quorum: every node knows the voters, so all format the same way.
            quorum = {
                "controller.quorum.voters": ",".join(
                    f"{node}@127.0.0.1:{port}" for node, port in sorted(self.voters.items())
                )
            }
        else:
            quorum = {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            **COMMON_SETTINGS,
            **(REPLICATED_SETTINGS if self.replicated else SINGLE_NODE_SETTINGS),
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def _java(self, main_class: str, *args: str, **popen: object) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap_mb}m",
            f"-Xms{min(self.heap_mb, 128)}m",
            "-XX:+UseG1GC",
            "-XX:MaxDirectMemorySize=256m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            self._classpath(),
            main_class,
            *args,
        ]

    def format_storage(self) -> None:
        """Format the log dir once; a formatted dir keeps its cluster id and data."""
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        if self.replicated and not self.cluster_id:
            raise ValueError("nodes of a quorum must share a cluster id")
        # A base64 id may start with "-": pass it as --cluster-id=... so it is not read as a flag.
        cluster_id = self.cluster_id or new_cluster_id()
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            *([] if self.replicated else ["--standalone"]),
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.config_file),
        )
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    def start(self, timeout_s: float = 90.0) -> None:
        self.launch()
        self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Format if needed and start the JVM; return without waiting for it."""
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(
                f"port {self.port} is taken: is another Kafka running? (`make down`)"
            )
        self.write_config()
        self.format_storage()
        log = open(self.log_file, "ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_process_group,
        )
        log.close()

    def wait_ready(self, timeout_s: float) -> None:
        """Ready means the broker answers metadata requests, not merely that the port opened."""
        from kafka.admin import KafkaAdminClient

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"Kafka exited with {self.process.returncode}; see {self.log_file}"
                )
            if not port_open("127.0.0.1", self.port):
                return False
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                admin.describe_cluster()
            finally:
                admin.close()
            return True

        try:
            wait_for(answers, timeout_s, "Kafka", 0.3, retry_on=(Exception,), fatal=RuntimeError)
        except WaitTimeout as exc:
            raise TimeoutError(f"Kafka not ready: {exc}; see {self.log_file}") from None

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.own_process_group:
            stop_group(self.process.pid, timeout_s, self.process)
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Crash the broker (SIGKILL), as a power cut would."""
        if self.process is None or self.process.poll() is not None:
            return
        if self.own_process_group:
            kill_group(self.process.pid, 30.0, self.process)
        else:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.kafka")
    parser.add_argument("command", choices=["start"])
    parser.add_argument("--data-dir", type=Path, default=RUN / "kafka")
    parser.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", 9092)))
    parser.add_argument("--controller-port", type=int, default=9093)
    parser.add_argument("--heap-mb", type=int, default=int(os.environ.get("KAFKA_HEAP_MB", 512)))
    parser.add_argument("--node-id", type=int, default=1)
    parser.add_argument(
        "--voters", help="the quorum as NODE@CONTROLLER_PORT,... (default: this node alone)"
    )
    parser.add_argument("--cluster-id", help="shared by every node of a quorum")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=float(os.environ.get("KAFKA_READY_TIMEOUT_S", 300)),
        help="seconds to wait for the broker to answer (log recovery after a crash is slow)",
    )
    args = parser.parse_args(argv)
    voters = None
    if args.voters:
        voters = {
            int(node): int(port)
            for node, port in (voter.split("@") for voter in args.voters.split(","))
        }
    broker = KafkaBroker(
        args.data_dir,
        args.port,
        args.controller_port,
        args.heap_mb,
        own_process_group=False,
        node_id=args.node_id,
        voters=voters,
        cluster_id=args.cluster_id,
    )
    try:
        broker.start(timeout_s=args.ready_timeout)
    except BaseException:
        broker.stop()  # never leave the JVM running without its supervisor
        raise
    print(f"kafka: ready on {broker.bootstrap} (data in {args.data_dir})", flush=True)

    stop_requested: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop_requested.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stop_requested.append(signum))
    # Poll rather than wait(): a signal handler must not wait on the same Popen.
    assert broker.process is not None
    while not stop_requested and broker.process.poll() is None:
        time.sleep(0.3)
    if stop_requested:
        broker.stop()
        return 0
    print(f"kafka: broker exited with {broker.process.returncode}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
