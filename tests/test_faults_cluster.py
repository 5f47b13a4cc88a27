"""Faults on the local scale-out cluster (`make up-cluster`'s layout: 3 KRaft brokers with
replication 3 and min.insync.replicas 2, a Flink JobManager and 2 TaskManagers, the job at
parallelism 2 with checkpoints in a shared folder).

One cluster and one job serve the whole module (a cluster start and a job submission cost
minutes on two cores). A seeded synthetic session is fed through an idempotent acks=all
producer at a steady pace while each test injects its fault mid-stream:
  1. kill -9 one broker, restart it: the feed goes on, ISR shrinks to 2 and recovers to 3;
  2. kill -9 two brokers: writes cannot reach min.insync.replicas, the producer holds its
     records (bounded buffer, none failed), and delivers them once both are back;
  3. kill -9 one TaskManager: the job fails over from its last checkpoint onto the other's
     slots while the killed one restarts;
  4. the job killed at random points, JOB_RESTARTS times: the TaskManager JVM running its
     tasks SIGKILLed (in-place failover), every fifth time cancelled without a savepoint and
     resubmitted (resumes from the newest retained checkpoint);
  5. the three brokers restarted one by one while the job runs.
The last test reads the outputs read_committed and compares them with the oracle of the fault
tests (tests/golden/oracle.py via expected_candles_and_liquidity): 0 missing, 0 duplicated.
12 min 36 s for the module on two shared cores (docs/performance.md). Known flake: the free
ports come from the ephemeral range, so now and then an outgoing connection takes one before
its server binds it (seen once: the JobManager's RPC port; the fixture then errors).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stack.cluster import (
    ClusterPorts,
    Layout,
    LocalCluster,
    rest_json,
    running_job,
    submit_job,
)
from stack.up import Component
from tests.faults_support import (
    Feeder,
    Session,
    TopicTail,
    committed_source_offsets,
    compare,
    create_prefixed_topics,
    end_ms,
    end_offsets,
    expected_candles_and_liquidity,
    keep_artifacts,
    merged_input,
    new_prefix,
    synthetic_session,
    wait_for,
)

# The module's fixture (a cluster start and a job submission that plans sql/) counts towards
# the first test's time; kills that resubmit plan again.
pytestmark = [pytest.mark.kafka, pytest.mark.flink, pytest.mark.timeout(1800)]

TRADES = 30_000
# The feed never stops: a trickle while a fault is injected, fast while a test waits for the
# job's progress (so each fault falls mid-stream and the session lasts the whole module).
TRICKLE_RATE = 10
PROGRESS_RATE = 300
# Five kills (four in place, one resubmission) by default: at ~50 s a kill on two shared cores
# (failover with a backoff that grows to 30 s, then progress), ten take ~9 min and push the
# module past 20; MOEX_CLUSTER_JOB_RESTARTS=10 runs the ten (passed 2026-11-30).
JOB_RESTARTS = int(os.environ.get("MOEX_CLUSTER_JOB_RESTARTS", 5))
OUTPUTS = ("candles_1m", "liquidity_1s")
# The guarantee "a partition resuming late loses nothing" holds while no partition is silent
# longer than the idle timeout (docs/guarantees.md). Two brokers down hold the producer's records
# for 60-100 s here (kill, restart, log recovery, ISR back to 2 per partition), and partitions
# become writable again one by one: with the default 60 s the first one back ran ahead, the
# others were marked idle and 78 liquidity_1s rows were dropped as late (seen 2026-11-30). A
# cluster that must ride out such outages sets the timeout above them, as this one does.
IDLE_TIMEOUT_MS = 300_000
GRAIN = ["ticker", "window_end"]


@dataclass
class Stream:
    cluster: LocalCluster
    session: Session
    prefix: str
    feeder: Feeder
    work: Path
    job_id: str = ""
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def bootstrap(self) -> str:
        return self.cluster.layout.ports.bootstrap

    @property
    def flink_port(self) -> int:
        return self.cluster.layout.ports.flink

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:6.0f} s  {text}"
        self.events.append(line)
        print(line, flush=True)

    def submit(self) -> str:
        group = self.prefix.rstrip(".")
        self.job_id = submit_job(
            self.cluster.layout,
            [
                "--topic-prefix", self.prefix,
                "--txn-prefix", group,
                "--group-id", group,
                "--checkpoint-ms", "1000",
                "--idle-timeout-ms", str(IDLE_TIMEOUT_MS),
                "--only", ",".join(OUTPUTS),
            ],
        )  # fmt: skip
        wait_for(lambda: running_job(self.flink_port), 300, "the job to run", every_s=0.5)
        return self.job_id

    def checkpoints(self) -> dict:
        return rest_json(self.flink_port, f"/jobs/{self.job_id}/checkpoints")

    def latest_checkpoint(self) -> int:
        latest = (self.checkpoints().get("latest") or {}).get("completed") or {}
        return int(latest.get("id", -1))

    def confirmed_trades(self) -> int:
        """Input trades the job's checkpoints confirmed, or -1 while no broker can tell."""
        from kafka.errors import KafkaError

        try:
            return committed_source_offsets(
                live_bootstrap(self.cluster), self.prefix.rstrip("."), f"{self.prefix}trades"
            )
        except KafkaError:
            return -1

    def wait_progress(self, trades: int = 500, timeout_s: float = 240) -> int:
        """Until a checkpoint confirms `trades` more input trades than now."""
        base = wait_for(lambda: self.confirmed_trades() + 1, 120, "the job's offsets") - 1
        self.feeder.rate = PROGRESS_RATE
        try:
            return wait_for(
                lambda: (n := self.confirmed_trades()) >= base + trades and n,
                timeout_s,
                f"a checkpoint confirming {trades} more trades",
                every_s=0.5,
            )
        finally:
            self.feeder.rate = TRICKLE_RATE

    def restarts(self) -> int:
        detail = rest_json(self.flink_port, f"/jobs/{self.job_id}/exceptions")
        return len(detail.get("exceptionHistory", {}).get("entries", []))


def isr(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """In-sync replicas per partition, or {} while the brokers asked cannot tell."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    except KafkaError:
        return {}
    try:
        (described,) = admin.describe_topics([topic])
        return {p["partition_index"]: sorted(p["isr_nodes"]) for p in described["partitions"]}
    except KafkaError:
        return {}
    finally:
        admin.close()


def live_bootstrap(cluster: LocalCluster) -> str:
    """The brokers that run: a client given a dead one may fail on it instead of moving on."""
    ports = cluster.layout.ports.kafka
    return ",".join(f"127.0.0.1:{ports[n]}" for n, b in enumerate(cluster.brokers) if b.alive())


@pytest.fixture(scope="module")
def stream() -> Iterator[Stream]:
    work = Path(tempfile.mkdtemp(prefix="moex-faults-cluster-"))
    cluster = LocalCluster(Layout(ClusterPorts.free(), work))
    feeder = None
    try:
        t0 = time.monotonic()
        cluster.start()
        session = synthetic_session(work / "input", seed=53, trades=TRADES)
        prefix = new_prefix("cl")
        create_prefixed_topics(cluster.layout.ports.bootstrap, prefix, replication_factor=3)
        feeder = Feeder(cluster.layout.ports.bootstrap, prefix, merged_input(session), TRICKLE_RATE)
        # The feeder sends as the producer does (producer.sinks.HoldingSender): while brokers are
        # down its records are retried, never expired, and it says "holding".
        s = Stream(cluster, session, prefix, feeder, work)
        s.note(f"cluster up in {time.monotonic() - t0:.0f} s: {cluster.rss_mib()}")
        feeder.start()
        s.submit()
        s.note(f"job {s.job_id} running")
        yield s
    except BaseException:
        print(f"logs kept in {keep_artifacts(work, 'cluster')}")
        raise
    finally:
        try:
            if feeder is not None:
                feeder.close()
        finally:  # a producer that cannot flush must not leave the cluster running
            cluster.stop()
            shutil.rmtree(work, ignore_errors=True)


def test_cluster_when_one_broker_is_killed_then_isr_shrinks_and_recovers(stream: Stream) -> None:
    cluster = stream.cluster
    topic = f"{stream.prefix}trades"
    stream.wait_progress()
    assert all(len(nodes) == 3 for nodes in isr(stream.bootstrap, topic).values())
    victim = cluster.brokers[1]
    cluster.kill(victim)
    down = time.monotonic()
    try:
        shrunk = wait_for(
            lambda: (
                (state := isr(live_bootstrap(cluster), topic))
                and all(2 not in nodes and len(nodes) == 2 for nodes in state.values())
                and state
            ),
            60,
            "the ISR without broker 2",
        )
        stream.note(f"broker 2 killed; ISR {shrunk} after {time.monotonic() - down:.1f} s")
        stream.wait_progress()  # the job goes on with two replicas in sync
    finally:
        if not victim.alive():
            cluster.restart(victim)
    recovered = wait_for(
        lambda: (
            (state := isr(live_bootstrap(cluster), topic))
            and all(nodes == [1, 2, 3] for nodes in state.values())
            and state
        ),
        120,
        "broker 2 back in every ISR",
    )
    stream.note(f"broker 2 back: ISR {recovered} {time.monotonic() - down:.0f} s after the kill")
    assert not stream.feeder.failed_sends


def test_cluster_when_two_brokers_are_killed_then_the_producer_holds_and_loses_nothing(
    stream: Stream,
) -> None:
    cluster = stream.cluster
    trades = f"{stream.prefix}trades"
    stream.wait_progress()
    stream.feeder.rate = 50  # enough to see the producer hold within seconds
    before = stream.feeder.sent
    cluster.kill(cluster.brokers[0])
    cluster.kill(cluster.brokers[2])
    try:
        down = time.monotonic()
        # One replica left: below min.insync.replicas (and without a controller quorum), so no
        # write is acknowledged, while the producer keeps its records (bounded: the source waits
        # at producer.sinks.MAX_HELD_RECORDS) and retries them instead of dropping any.
        wait_for(lambda: stream.feeder.sent >= before + 100, 60, "the feed to go on sending")
        acked_at, sent_at = stream.feeder.acked, stream.feeder.sent
        # Half a minute down at 50 records/s: the hold is said, and the backlog builds up.
        wait_for(lambda: stream.feeder.sent >= sent_at + 1500, 90, "1,500 more records sent")
        assert stream.feeder.acked == acked_at, "a write was acknowledged with one broker in sync"
        held = stream.feeder.sent - stream.feeder.acked
    finally:
        for broker in (cluster.brokers[0], cluster.brokers[2]):
            if not broker.alive():
                cluster.restart(broker, wait=False)
        back = time.monotonic()
        for broker in (cluster.brokers[0], cluster.brokers[2]):
            broker.wait_ready()
        stream.feeder.rate = TRICKLE_RATE
    stream.note(
        f"brokers 1 and 3 down {back - down:.0f} s: no write acknowledged, {held} records "
        f"held by the producer, {len(stream.feeder.failed_sends)} failed; both ready "
        f"{time.monotonic() - back:.0f} s after their restart"
    )
    wait_for(lambda: stream.feeder.acked >= sent_at + 1500, 180, "the held records acknowledged")
    stream.note(
        f"every held record acknowledged {time.monotonic() - back:.0f} s after the restart "
        f"({stream.feeder.acked} in all), none failed"
    )
    stream.wait_progress(timeout_s=300)
    assert not stream.feeder.failed_sends, stream.feeder.failed_sends[:3]
    assert isr(live_bootstrap(cluster), trades)


def test_cluster_when_a_taskmanager_is_killed_then_the_job_fails_over_from_a_checkpoint(
    stream: Stream,
) -> None:
    cluster = stream.cluster
    stream.wait_progress()
    restarts = stream.restarts()
    checkpoint = stream.latest_checkpoint()
    victim = cluster.taskmanagers[0]
    cluster.kill(victim)
    down = time.monotonic()
    cluster.restart(victim, wait=False)
    wait_for(lambda: stream.restarts() > restarts, 120, "the job to register the failure")
    wait_for(lambda: running_job(stream.flink_port), 300, "the job to run again", every_s=0.5)
    restored = (stream.checkpoints().get("latest") or {}).get("restored") or {}
    assert int(restored.get("id", -1)) >= checkpoint, restored
    recovered = time.monotonic() - down
    victim.wait_ready()
    stream.wait_progress()
    stream.note(
        f"taskmanager-1 killed: job running again from checkpoint #{restored.get('id')} "
        f"{recovered:.0f} s later"
    )


def hosting_taskmanagers(stream: Stream) -> list[Component]:
    """The TaskManagers with a slot in use: the JVMs running the job's tasks."""
    busy = {
        tm["id"]
        for tm in rest_json(stream.flink_port, "/taskmanagers")["taskmanagers"]
        if tm["freeSlots"] < tm["slotsNumber"]
    }
    return [tm for tm in stream.cluster.taskmanagers if tm.name in busy and tm.alive()]


def cancel(stream: Stream) -> None:
    """Cancel without a savepoint: open transactions are aborted, as in a crash."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{stream.flink_port}/jobs/{stream.job_id}?mode=cancel", method="PATCH"
    )
    urllib.request.urlopen(request, timeout=10).close()
    job_id = stream.job_id
    wait_for(
        lambda: rest_json(stream.flink_port, f"/jobs/{job_id}")["state"] == "CANCELED",
        60,
        "the cancellation",
    )


def test_cluster_when_the_job_is_killed_at_random_points_then_it_resumes_each_time(
    stream: Stream,
) -> None:
    """JOB_RESTARTS kills at random points. Most SIGKILL a TaskManager JVM that runs the job's
    tasks (candles_1m and liquidity_1s use no Python UDF, so the tasks are all in the JVM): the
    job fails and Flink restarts it from its last checkpoint on the other TaskManager's slots,
    while the killed one is restarted as a supervisor would. Every fifth cancels the job and
    resubmits it with `runner run --jobmanager`, which resumes from the newest retained
    checkpoint in the shared folder (a resubmission plans sql/ again: a minute or two on two
    cores, so not all of them are of that kind)."""
    rng = random.Random(12)
    for attempt in range(1, JOB_RESTARTS + 1):
        for taskmanager in stream.cluster.taskmanagers:  # a spare for the failover
            if taskmanager.alive():
                taskmanager.wait_ready()
        time.sleep(rng.uniform(0.5, 6.0))  # a random point between checkpoints (1 s apart)
        checkpoint = stream.latest_checkpoint()
        confirmed = stream.confirmed_trades()
        t0 = time.monotonic()
        if attempt % 5 == 0:
            cancel(stream)
            stream.submit()
            how = "cancelled and resubmitted"
        else:
            hosting = hosting_taskmanagers(stream)
            assert hosting, "no TaskManager runs the job's tasks"
            victim = rng.choice(hosting)
            restarts = stream.restarts()
            stream.cluster.kill(victim)
            stream.cluster.restart(victim, wait=False)
            wait_for(lambda r=restarts: stream.restarts() > r, 120, "the job to fail")
            wait_for(lambda: running_job(stream.flink_port), 300, "the job to run", every_s=0.5)
            how = f"{victim.name} SIGKILLed"
        restored = (stream.checkpoints().get("latest") or {}).get("restored") or {}
        stream.note(
            f"kill {attempt}: {how} after checkpoint #{checkpoint} ({confirmed} trades "
            f"confirmed); running again from checkpoint #{restored.get('id')} in "
            f"{time.monotonic() - t0:.0f} s"
        )
        assert restored, f"kill {attempt}: the job did not restore a checkpoint"
        assert int(restored["id"]) >= checkpoint, (attempt, restored, checkpoint)
        stream.wait_progress(200)


def test_cluster_when_brokers_restart_one_by_one_then_the_job_runs_on(stream: Stream) -> None:
    cluster = stream.cluster
    topic = f"{stream.prefix}trades"
    for number, broker in enumerate(cluster.brokers, start=1):
        stream.wait_progress(300)
        broker.stop(timeout_s=60)
        cluster.restart(broker)
        wait_for(
            lambda: (
                (state := isr(live_bootstrap(cluster), topic))
                and all(nodes == [1, 2, 3] for nodes in state.values())
            ),
            120,
            f"broker {number} back in every ISR",
        )
        stream.note(f"rolling restart: broker {number} back in sync")
    stream.wait_progress()
    assert running_job(stream.flink_port)


def closed(rows: list[dict], session: Session) -> list[dict]:
    return [row for row in rows if end_ms(row) <= session.sentinel_ts]


def shortfall(stream: Stream, tails: dict[str, TopicTail], expected: dict[str, list]) -> str:
    """Rows read against rows expected per output, and per partition the last stable offset
    (read_committed end) against the high watermark: LSO < HW for minutes means an open
    transaction holds every read_committed reader (it ends at transaction.timeout.ms)."""
    lines = []
    for name, tail in tails.items():
        have = len(closed(tail.rows(), stream.session))
        lso = end_offsets(stream.bootstrap, tail.topic, committed=True)
        hw = end_offsets(stream.bootstrap, tail.topic, committed=False)
        where = ", ".join(
            f"p{tp.partition} at {tail.consumer.position(tp)} LSO {lso[tp.partition]} "
            f"HW {hw[tp.partition]}"
            for tp in tail.tps
        )
        lines.append(f"{name}: {have} of {len(expected[name])} rows read; {where}")
    try:
        job = rest_json(stream.flink_port, f"/jobs/{stream.job_id}")
        lines.append(f"job {stream.job_id} {job.get('state')}, restarts {stream.restarts()}")
    except OSError as exc:
        lines.append(f"job state unknown: {exc}")
    lines.extend(stream.events)
    return "\n".join(lines)


def test_cluster_when_faults_are_over_then_outputs_equal_the_oracle(stream: Stream) -> None:
    expected = expected_candles_and_liquidity(stream.session)
    stream.feeder.rate = 5000  # the rest of the session, then its sentinels
    stream.feeder.wait_done(600)
    total = len(stream.session.trade_lines())
    wait_for(lambda: stream.confirmed_trades() >= total, 600, "the job to confirm every trade")
    tails = {name: TopicTail(stream.bootstrap, f"{stream.prefix}{name}") for name in OUTPUTS}
    try:

        def complete() -> bool:
            for tail in tails.values():
                tail.poll(200)
            return all(
                len(closed(tails[n].rows(), stream.session)) >= len(rows)
                for n, rows in expected.items()
            )

        try:
            wait_for(complete, 300, "every expected row")
        except TimeoutError as exc:  # say which output is short and whether a transaction holds it
            raise AssertionError(f"{exc}\n{shortfall(stream, tails, expected)}") from exc
        failures = []
        for name, rows in expected.items():
            tails[name].drain()
            result = compare(name, rows, closed(tails[name].rows(), stream.session), GRAIN)
            if not result.ok:
                failures.append(result.summary())
        counts = ", ".join(f"{n} {len(rows)} rows" for n, rows in expected.items())
        resident = stream.cluster.rss_mib()
        stream.note(
            f"cluster resident after the faults: {sum(resident.values()):.0f} MiB "
            f"({', '.join(f'{name} {mib:.0f}' for name, mib in resident.items())})"
        )
        stream.note(f"compared with the oracle: {counts}; {'OK' if not failures else 'FAILED'}")
        print("\n" + "\n".join(stream.events))
        assert not failures, "\n".join(failures)
    finally:
        for tail in tails.values():
            tail.close()


def test_sql_client_when_candles_queried_then_it_prints_the_committed_rows(stream: Stream) -> None:
    """`make sql`: Flink's own SQL client on the cluster, run with a file as a user would pipe
    one; sql/'s tables are declared by the generated init file."""
    import subprocess

    from stack.cluster import sql_client

    query = stream.work / "query.sql"
    query.write_text(
        "SELECT ticker, window_end, volume FROM candles_1m "
        "/*+ OPTIONS('scan.bounded.mode'='latest-offset') */ WHERE ticker = 'SBER';\n"
    )
    command, env = sql_client(stream.cluster.layout, query, topic_prefix=stream.prefix)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    printed = [
        line for line in done.stdout.splitlines() if line.startswith("| +I |") and "SBER" in line
    ]
    tail = TopicTail(stream.bootstrap, f"{stream.prefix}candles_1m")
    try:
        tail.drain()
        committed = [r for r in tail.rows() if r["ticker"] == "SBER"]
    finally:
        tail.close()
    stream.note(f"make sql: {len(printed)} SBER candles printed, {len(committed)} committed")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert committed and len(printed) == len(committed), done.stdout[-3000:]
    # Flink's client says "1 row" and "2 rows".
    noun = "row" if len(committed) == 1 else "rows"
    assert f"Received a total of {len(committed)} {noun} " in done.stdout, done.stdout[-3000:]
