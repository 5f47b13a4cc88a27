"""Hot reload of sql/: plan and check the new job, then swap it in from a savepoint.

    python -m runner reload [--pid-file .run/runner.json]

The job is hosted by the `python -m runner run` process, which records itself in the pid file
(pid, job id, REST port, sql dir). `reload` sends it SIGHUP and prints what it reports; the
runner, whose JVM is warm, does the work, every check before the old job is touched:
  1. plans the new sql/ once (headers, Flink's parser and planner): errors as file:line:col;
  2. meanwhile, in a thread, asks the broker whether every sink topic exists or can be created
     (validate only: `sql/.../x.sql:LINE:1: topic ... cannot be created: <broker's reason>`),
     then creates the missing ones (a topic of a file whose SQL fails is kept for its fix);
  3. reports which outputs restore from the savepoint and which start fresh (rule below), and
     which were dropped (their topics are kept, with their data; nothing is deleted);
  4. stops the old job with a savepoint (POST /jobs/<id>/stop, no drain) and submits the
     already planned job restored from it (unclaimed state ignored); if it cannot start, the
     old plan is resubmitted from the same savepoint;
  5. asks for a checkpoint as soon as every task of the new job runs, waits for the first one
     to complete, when exactly-once outputs flow again, and prints the gap the old outputs saw
     and where the time went; a new job that restarts or fails first is cancelled and the old
     one resubmitted from the savepoint (exit 1); one that runs but is slow to checkpoint (a
     loaded machine) is left running.
Any failure in 1-3 exits 2 with the old job still running, untouched.

Which outputs restore: Flink SQL gives operators no uids, so an operator's id is a hash of its
place in the job graph, and savepoint state goes back to the operator with the same id. The
runner compares, output by output, the operator ids of the output's sink and everything
upstream in the new job graph with those of the running job: all known -> "restores" (windows,
OVER history, de-duplication state carry on); any new id -> "starts fresh": those operators
start empty (windows refill, indicators warm up again, up to 33 candles for MACD) and a source
whose id changed resumes from the consumer group's committed offsets. An edit that keeps the
graph (a threshold, a comment) restores everything; a new output usually leaves the others'
ids alone. Exactly-once sinks keep their transactional-id prefixes, so a reload never
duplicates committed rows.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from runner.pidfile import read_state
from runner.settings import Settings


def reload(settings: Settings, timeout_s: float = 600.0) -> int:
    """Ask the runner to reload; print its report as it comes; 0 when the new job runs."""
    state = read_state(settings.pid_file)
    if state is None:
        print(
            f"runner: no running job recorded in {settings.pid_file}: start one with "
            "`python -m runner run`",
            file=sys.stderr,
        )
        return 1
    asked = time.time()
    os.kill(int(state["pid"]), signal.SIGHUP)
    print(f"runner: asked runner {state['pid']} to reload job {state['job_id']}", flush=True)
    printed = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read_state(settings.pid_file)
        if now is None:
            print("runner: the runner exited during the reload", file=sys.stderr)
            return 1
        record = now.get("reload") or {}
        if record.get("started", 0) < asked:
            continue
        lines = record.get("lines", [])
        for stream, line in lines[printed:]:
            print(line, file=sys.stderr if stream == "err" else sys.stdout, flush=True)
        printed = len(lines)
        if record.get("done"):
            return int(record.get("code", 1))
    print(f"runner: the reload did not finish within {timeout_s:.0f} s", file=sys.stderr)
    return 1
