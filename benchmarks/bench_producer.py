"""producer: trades/s of `python -m producer synthetic --rate 0` into a local broker.

The project's own producer, unchanged: kafka-python, idempotent, acks=all, compression `auto`
(gzip unless the lz4 package is installed), linger 20 ms, 256 KiB batches; 10 tickers.
"""

from __future__ import annotations

import re
import resource
import time

from benchmarks.harness import PY, TICKERS, Proc, child_env, kafka_broker, say, workspace
from benchmarks.report import Result, median
from benchmarks.sampling import Sampler

SUMMARY = re.compile(
    r"done \((?P<ended>[^)]+)\) in (?P<seconds>[\d.]+) s: (?P<records>\d+) records "
    r"\(trades (?P<trades>\d+), orderbook (?P<books>\d+).*?(?P<rate>\d+) trades/s"
)


def run(quick: bool, repeat: int, keep: bool = False) -> Result:
    result = Result("producer")
    events = 20_000 if quick else 200_000
    runs = []
    with workspace("producer", keep) as work, kafka_broker(work) as broker:
        for index in range(repeat):
            command = [
                PY, "-m", "producer", "synthetic",
                "--bootstrap", broker.bootstrap,
                "--rate", "0",
                "--max-events", str(events),
                "--seed", str(100 + index),
                "--tickers", ",".join(TICKERS),
                "--stats-every", "0",
            ]  # fmt: skip
            say(f"producer: run {index + 1}/{repeat}, {events:,} trades into Kafka")
            started = time.monotonic()
            # CPU of the reaped child, exact (sampling /proc would miss its last moments).
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = Proc("producer", command, work / f"producer-{index}.log", child_env(work))
            sampler = Sampler({"producer": proc.pid}, every_s=0.5).start()
            code = proc.wait(600)
            sampler.stop()
            wall = time.monotonic() - started
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_s = (children_after.ru_utime - children_before.ru_utime) + (
                children_after.ru_stime - children_before.ru_stime
            )
            if code is None:
                proc.stop()
                raise RuntimeError(f"producer did not finish in 600 s:\n{proc.tail()}")
            text = proc.log_path.read_text()
            match = SUMMARY.search(text)
            if code != 0 or match is None:
                raise RuntimeError(f"producer failed ({code}):\n{proc.tail()}")
            seconds = float(match["seconds"])
            runs.append(
                {
                    "trades": int(match["trades"]),
                    "books": int(match["books"]),
                    "records": int(match["records"]),
                    "seconds": seconds,
                    "trades_per_s": round(int(match["trades"]) / seconds),
                    "records_per_s": round(int(match["records"]) / seconds),
                    "process_wall_s": round(wall, 2),
                    "peak_rss_mb": round(sampler.peak_rss.get("producer", 0), 1),
                    "cpu_cores": round(cpu_s / wall, 2),
                }
            )
            last = runs[-1]
            say(
                f"producer: {last['trades_per_s']:,} trades/s "
                f"({last['records_per_s']:,} records/s incl. books)"
            )
    trades_per_s = median(r["trades_per_s"] for r in runs)
    result.row(
        "synthetic -> Kafka, trades/s",
        trades_per_s,
        "trades/s",
        target="20 K/s to feed the live target",
        met=trades_per_s is not None and trades_per_s >= 20_000,
        runs=[r["trades_per_s"] for r in runs],
    )
    result.row(
        "synthetic -> Kafka, records/s (trades + books)",
        median(r["records_per_s"] for r in runs),
        "records/s",
        runs=[r["records_per_s"] for r in runs],
    )
    result.row(
        "producer CPU while sending",
        median(r["cpu_cores"] for r in runs),
        "cores",
        runs=[r["cpu_cores"] for r in runs],
    )
    result.row(
        "producer peak RSS",
        median(r["peak_rss_mb"] for r in runs),
        "MiB",
        runs=[r["peak_rss_mb"] for r in runs],
    )
    result.details = {
        "params": {
            "trades_per_run": events,
            "tickers": TICKERS,
            "command": "python -m producer synthetic --rate 0 --max-events N --seed S "
            "--tickers <10> --stats-every 0",
        },
        "runs": runs,
    }
    result.notes.append(
        "trades/s is the producer's own count over its run time (generate, validate, send, "
        "final flush); books ride along (~0.3 per trade), so records/s is higher"
    )
    return result
