"""compose/ is the Docker form of the scale-out path; no Docker engine runs here, so these tests
keep it consistent with `make up-cluster` (stack/cluster.py, stack/kafka.py: the same layout as
local processes, exercised by tests/test_faults_cluster.py) by comparing the settings both use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stack.topics import load_topics

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    pairs = {}
    for line in (COMPOSE / ".env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def pom_property(name: str) -> str:
    match = re.search(rf"<{name}>([^<]+)</{name}>", (ROOT / "jvm" / "pom.xml").read_text())
    assert match, name
    return match.group(1)


def test_compose_when_versions_compared_then_match_local_pins(env: dict[str, str]) -> None:
    requirements = (ROOT / "requirements.txt").read_text()
    flink_pin = re.search(r"^apache-flink==(\S+)", requirements, re.M).group(1)
    assert env["FLINK_VERSION"] == flink_pin
    assert env["FLINK_CONNECTOR_VERSION"] == pom_property("flink.connector.version")
    assert pom_property("flink.version") == flink_pin  # the SQL gateway jar of `make sql`
    assert env["FLINK_CONNECTOR_VERSION"].endswith("-" + ".".join(flink_pin.split(".")[:2]))
    assert env["KAFKA_VERSION"] == pom_property("kafka.version")
    assert len(env["KAFKA_CLUSTER_ID"]) == 22


def test_compose_when_parsed_then_three_brokers_replicate_with_min_isr_two(compose: dict) -> None:
    brokers = {n: s for n, s in compose["services"].items() if n.startswith("kafka-")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    node_ids = set()
    for service in brokers.values():
        environment = service["environment"]
        node_ids.add(environment["KAFKA_NODE_ID"])
        assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert environment["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert environment["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert environment["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        # The Flink sink's transaction timeout (runner) must fit under the broker maximum.
        assert environment["KAFKA_TRANSACTION_MAX_TIMEOUT_MS"] >= 600_000
        assert service["image"] == "apache/kafka:${KAFKA_VERSION}"
        assert "healthcheck" in service
    assert node_ids == {1, 2, 3}
    voters = brokers["kafka-1"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"


def test_compose_when_parsed_then_topics_come_from_topics_toml_with_rf3(compose: dict) -> None:
    command = compose["services"]["topics"]["command"]
    assert command[:4] == ["python", "-m", "stack.topics", "create"]
    assert command[command.index("--replication-factor") + 1] == "3"
    assert command[command.index("--min-insync-replicas") + 1] == "2"
    # The image copies the same declarations the local path reads.
    assert "COPY topics.toml" in (COMPOSE / "app.Dockerfile").read_text()
    assert "moex.trades" in load_topics()


def test_compose_when_parsed_then_flink_has_jobmanager_and_two_taskmanagers(compose: dict) -> None:
    services = compose["services"]
    assert services["jobmanager"]["command"] == "jobmanager"
    assert services["taskmanager"]["command"] == "taskmanager"
    assert services["taskmanager"]["deploy"]["replicas"] == 2
    assert services["jobmanager"]["image"] == "moex-stream/flink:${FLINK_VERSION}"
    dockerfile = (COMPOSE / "flink.Dockerfile").read_text()
    assert "FROM flink:${FLINK_VERSION}-java17" in dockerfile
    assert "apache-flink==${FLINK_VERSION}" in dockerfile
    assert "flink-sql-connector-kafka-${FLINK_CONNECTOR_VERSION}.jar" in dockerfile


def test_compose_when_parsed_then_job_uses_runner_entry_point_on_the_jobmanager(
    compose: dict,
) -> None:
    job = compose["services"]["job"]["command"]
    assert job[:4] == ["python", "-m", "runner", "run"]
    assert job[job.index("--jobmanager") + 1] == "jobmanager:8081"
    assert (ROOT / "runner" / "__main__.py").exists()
    for name, module in (("producer", "producer"), ("gateway", "gateway")):
        command = compose["services"][name]["command"]
        assert command[:3] == ["python", "-m", module]
        assert (ROOT / module).is_dir()


def test_compose_when_parsed_then_ports_match_local_stack(compose: dict) -> None:
    from stack.up import Ports

    local = Ports()
    services = compose["services"]
    assert f"{local.gateway}:{local.gateway}" in services["gateway"]["ports"]
    assert f"{local.flink}:8081" in services["jobmanager"]["ports"]
    assert services["kafka-1"]["ports"][0].startswith(f"{local.kafka}:")


def test_compose_when_parsed_then_sql_and_udfs_are_mounted_read_only(compose: dict) -> None:
    for name in ("jobmanager", "taskmanager", "job"):
        volumes = compose["services"][name]["volumes"]
        assert "../sql:/opt/moex/sql:ro" in volumes
        assert "../udfs:/opt/moex/udfs:ro" in volumes


def dependency_problems(services: dict) -> list[str]:
    """Every depends_on that does not prove its dependency works: a long-running dependency
    needs `service_healthy` and a healthcheck, a one-shot (exits, restarted only on failure, no
    ports) `service_completed_successfully`; `service_started` proves nothing."""
    problems = []
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            condition, target = spec.get("condition"), services[dependency]
            one_shot = target.get("restart") == "on-failure" and "ports" not in target
            if condition == "service_healthy" and "healthcheck" not in target:
                problems.append(f"{name} waits for {dependency} to be healthy: no healthcheck")
            elif condition == "service_completed_successfully" and not one_shot:
                problems.append(f"{name} waits for {dependency} to finish: it runs for good")
            elif condition not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"{name} depends on {dependency} with {condition}: proves nothing")
    return problems


def test_compose_when_service_depends_then_dependency_is_healthy_or_done(compose: dict) -> None:
    """A service starts only once what it needs works: a long-running dependency proves it by
    a healthcheck, a one-shot (topics, the job submission) by exiting 0. `service_started`
    would let the gateway start before the job wrote its catalog."""
    services = compose["services"]
    assert dependency_problems(services) == []
    # Each part waits for what it reads: the gateway for the job's catalog, the job and the
    # producer for the topics, the TaskManagers for the JobManager.
    waits = {name: set(s.get("depends_on", {})) for name, s in services.items()}
    assert {"job", "topics"} <= waits["gateway"]
    assert "topics" in waits["job"] and "topics" in waits["producer"]
    assert "jobmanager" in waits["taskmanager"]
    # The check itself catches the weak conditions.
    started = {**services["gateway"], "depends_on": {"job": {"condition": "service_started"}}}
    assert dependency_problems({**services, "gateway": started}) == [
        "gateway depends on job with service_started: proves nothing"
    ]
    never_done = {
        **services["gateway"],
        "depends_on": {"producer": {"condition": "service_completed_successfully"}},
    }
    assert dependency_problems({**services, "gateway": never_done}) == [
        "gateway waits for producer to finish: it runs for good"
    ]


def kafka_env_name(setting: str) -> str:
    """The apache/kafka image's spelling of a server.properties key."""
    return "KAFKA_" + setting.upper().replace(".", "_")


def test_compose_when_compared_then_brokers_have_the_local_cluster_settings(compose: dict) -> None:
    from stack.kafka import COMMON_SETTINGS, REPLICATED_SETTINGS

    for name in ("kafka-1", "kafka-2", "kafka-3"):
        environment = compose["services"][name]["environment"]
        for setting, value in {**COMMON_SETTINGS, **REPLICATED_SETTINGS}.items():
            assert str(environment.get(kafka_env_name(setting))) == value, (name, setting)


def test_compose_when_compared_then_flink_has_the_local_cluster_settings(compose: dict) -> None:
    from stack.cluster import FLINK_SHARED_SETTINGS

    properties = yaml.safe_load(compose["x-flink-properties"])
    for setting, value in FLINK_SHARED_SETTINGS.items():
        assert str(properties.get(setting)) == value, setting
    for name in ("jobmanager", "taskmanager"):
        assert (
            compose["services"][name]["environment"]["FLINK_PROPERTIES"]
            == (compose["x-flink-properties"])
        )


def test_compose_when_compared_then_topics_and_ports_match_the_local_cluster(
    compose: dict,
) -> None:
    from stack.cluster import MIN_INSYNC_REPLICAS, PARALLELISM, REPLICATION_FACTOR, ClusterPorts

    command = compose["services"]["topics"]["command"]
    assert command[command.index("--replication-factor") + 1] == str(REPLICATION_FACTOR)
    assert command[command.index("--min-insync-replicas") + 1] == str(MIN_INSYNC_REPLICAS)
    assert compose["services"]["taskmanager"]["deploy"]["replicas"] == PARALLELISM
    local = ClusterPorts()
    services = compose["services"]
    assert services["kafka-1"]["ports"][0].startswith(f"{local.kafka[0]}:")
    assert f"{local.flink}:8081" in services["jobmanager"]["ports"]
    assert f"{local.gateway}:{local.gateway}" in services["gateway"]["ports"]
