"""`make up` as a user runs it: the whole stack comes up, serves, and goes away without orphans.

Runs the supervisor (`python -m stack.up`, what `make up` calls) on free ports with its state in
a temp folder, so it does not collide with a stack the developer has running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from kafka import KafkaConsumer

from stack.kafka import free_port
from stack.proc import descendants, tree_rss_mib
from tests.environ import clean_environ

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.kafka, pytest.mark.flink]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_make_up_when_started_then_stack_serves_and_stops_without_orphans(
    test_output_dir: Path,
) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="moex-test-up-"))
    ports = {
        "KAFKA_PORT": free_port(),
        "KAFKA_CONTROLLER_PORT": free_port(),
        "FLINK_REST_PORT": free_port(),
        "GATEWAY_PORT": free_port(),
    }
    env = {**clean_environ(), **{k: str(v) for k, v in ports.items()}, "MOEX_RUN_DIR": str(run_dir)}
    log_path = test_output_dir / "make_up.log"
    log = open(log_path, "w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "stack.up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    children: set[int] = set()
    started = time.monotonic()
    try:
        # The acceptance: the gateway and the Flink UI answer within 3 minutes ...
        for port in (ports["GATEWAY_PORT"], ports["FLINK_REST_PORT"]):
            while True:
                assert supervisor.poll() is None, log_path.read_text()
                try:
                    if _get(f"http://127.0.0.1:{port}/")[0] < 500:
                        break
                except OSError:
                    pass
                elapsed = time.monotonic() - started
                assert elapsed < 180, f"port {port} silent after 3 min:\n{log_path.read_text()}"
                time.sleep(1)
        # ... and the job runs all its tasks soon after (planning 8 outputs on 2 cores is slow).
        while "is up" not in log_path.read_text():
            assert supervisor.poll() is None, log_path.read_text()
            elapsed = time.monotonic() - started
            assert elapsed < 300, f"make up not up in 5 min:\n{log_path.read_text()}"
            time.sleep(1)
        children = descendants(supervisor.pid)

        status, body = _get(f"http://127.0.0.1:{ports['GATEWAY_PORT']}/healthz")
        assert status == 200, body
        status, body = _get(f"http://127.0.0.1:{ports['FLINK_REST_PORT']}/jobs/overview")
        assert status == 200
        assert [j["state"] for j in json.loads(body)["jobs"]] == ["RUNNING"]
        status, body = _get(f"http://127.0.0.1:{ports['GATEWAY_PORT']}/api/streams")
        assert status == 200
        assert "candles_1m" in {s["name"] for s in json.loads(body)["streams"]}

        consumer = KafkaConsumer(
            "moex.trades",
            bootstrap_servers=f"127.0.0.1:{ports['KAFKA_PORT']}",
            auto_offset_reset="earliest",
            consumer_timeout_ms=20_000,
        )
        trade = json.loads(next(iter(consumer)).value)
        consumer.close()
        assert {"event_id", "ticker", "ts", "price", "qty", "side"} <= set(trade)

        # The whole stack must fit in 4 GiB resident.
        resident = tree_rss_mib(supervisor.pid)
        (test_output_dir / "make_up_rss.txt").write_text(f"{resident:.0f} MiB\n")
        assert resident < 4096, f"stack uses {resident:.0f} MiB"
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(120)
        except subprocess.TimeoutExpired:
            supervisor.kill()
        log.close()
        leftovers = [pid for pid in children if _alive(pid)]
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(run_dir, ignore_errors=True)
    assert supervisor.returncode == 0, log_path.read_text()
    assert not leftovers, f"processes left running after stop: {leftovers}"


def test_components_when_make_up_then_job_gets_short_watermark_delay_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`make up` feeds the ordered synthetic producer: a 300 ms delay, unless the user says."""
    from stack.up import Ports, components

    monkeypatch.delenv("MOEX_WATERMARK_DELAY_MS", raising=False)
    flink = next(c for c in components(Ports(), []) if c.name == "flink")
    assert flink.env["MOEX_WATERMARK_DELAY_MS"] == "300"
    monkeypatch.setenv("MOEX_WATERMARK_DELAY_MS", "1500")
    flink = next(c for c in components(Ports(), []) if c.name == "flink")
    assert flink.env["MOEX_WATERMARK_DELAY_MS"] == "1500"
