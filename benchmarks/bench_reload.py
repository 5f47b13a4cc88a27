"""Reload time: `runner reload` after adding one SQL file, to the new output's first row.

    python -m benchmarks.bench_reload [--code DIR] [--keep]

Starts a broker, the synthetic producer (10x session clock: a 1-minute candle every 6 s) and
`runner run` on a copy of sql/ (every output), waits until candles_1s flows, then writes the
worked example of docs/flink-job.md (obv_1m) into the copy and runs `runner reload`. Prints,
from the moment `reload` is started: when it returned, the new topic's first row, and the
longest pause of candles_1s (the old outputs' gap). `--code DIR` runs the runner of another
checkout (the "before" figure: a checkout whose reload needs the topic made by hand gets it
created first, as its docs said).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import (
    child_env,
    create_extra_topics,
    kafka_broker,
    say,
    stop_all,
    wait_for,
    workspace,
)
from moex.paths import ROOT
from stack.kafka import free_port
from tests.examples import obv
from tests.processes import Group

STARTED: list[Group] = []  # stopped on the way out, whatever happens


class TopicWatch:
    """Arrival times of new records on topics, read_uncommitted (arrival, not visibility)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="latest",
            group_id=None,
        )
        self.arrivals: dict[str, list[float]] = {t: [] for t in topics}

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for tp, records in self.consumer.poll(timeout_ms=100).items():
                self.arrivals[tp.topic].extend(time.time() for _ in records)


def run(code: Path, keep: bool) -> dict:
    with workspace("reload", keep) as work, kafka_broker(work) as broker:
        env = child_env(work, PYTHONPATH=str(code), MOEX_WATERMARK_DELAY_MS="300")
        sql_dir = work / "sql"
        shutil.copytree(code / "sql", sql_dir)
        port = free_port()
        pid_file = work / "runner.json"
        python = str(ROOT / ".venv" / "bin" / "python")
        producer = Group(
            [python, "-m", "producer", "synthetic", "--bootstrap", broker.bootstrap,
             "--accelerate", "10"],
            work / "producer.log", {**env, "PYTHONPATH": str(ROOT)},
        ).start()  # fmt: skip
        STARTED.append(producer)
        # cwd = the checkout: `python -m runner` imports the runner of the working directory.
        runner = Group(
            [python, "-m", "runner", "run", "--bootstrap", broker.bootstrap, "--rest-port",
             str(port), "--sql-dir", str(sql_dir), "--pid-file", str(pid_file),
             "--checkpoint-dir", str(work / "checkpoints"), "--catalog", str(work / "cat.json")],
            work / "runner.log", env, cwd=code,
        ).start()  # fmt: skip
        STARTED.append(runner)
        watch = TopicWatch(broker.bootstrap, ["moex.candles_1s", "moex.obv_1m"])
        started = time.monotonic()
        wait_for(lambda: watch.poll(1) or watch.arrivals["moex.candles_1s"], 1800, "candles")
        say(f"job up, candles flowing after {time.monotonic() - started:.0f} s")
        watch.poll(15)  # a steady state before the reload
        obv.write(sql_dir)
        if not (code / "stack" / "topics.py").read_text().count("output_topics"):
            create_extra_topics(broker.bootstrap, ["moex.obv_1m"])
        t0 = time.time()
        reload = subprocess.Popen(
            [python, "-m", "runner", "reload", "--pid-file", str(pid_file)],
            cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        returned = None
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and not watch.arrivals["moex.obv_1m"]:
            watch.poll(0.5)
            if returned is None and reload.poll() is not None:
                returned = time.time() - t0
                if reload.returncode != 0:  # refused or rolled back: no new row will come
                    break
        output = reload.communicate()[0]
        if returned is None:
            returned = time.time() - t0
        watch.poll(10)
        first_row = watch.arrivals["moex.obv_1m"][0] - t0 if watch.arrivals["moex.obv_1m"] else None
        candles = [t for t in watch.arrivals["moex.candles_1s"] if t >= t0 - 15]
        gap = max((b - a for a, b in zip(candles, candles[1:], strict=False)), default=None)
        for group in reversed(STARTED):  # before the broker goes
            group.stop()
        return {
            "code": str(code),
            "reload_returned_s": round(returned, 1),
            "first_obv_row_s": round(first_row, 1) if first_row else None,
            "candles_1s_longest_pause_s": round(gap, 1) if gap else None,
            "reload_output": output,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_reload")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose runner to time")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    # A SIGTERM (a deadline, `kill`) unwinds through the finally below: no broker, producer or
    # runner is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run(args.code.resolve(), args.keep)
    finally:
        for group in reversed(STARTED):
            group.stop()
        stop_all()
    print(result.pop("reload_output"))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
