"""The runner's record of itself (.run/runner.json by default): pid, job id, REST port, sql dir,
and the reload in progress. `run` writes it, `reload` and `make status` read it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from runner.settings import Settings


def write_state(settings: Settings, job_id: str, **extra: object) -> None:
    settings.pid_file.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": os.getpid(),
        "job_id": job_id,
        "rest_port": settings.rest_port,
        "sql_dir": str(settings.sql_dir),
        "only": settings.only,
        "updated": time.time(),
        **extra,
    }
    tmp = settings.pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(settings.pid_file)


def read_state(pid_file: Path) -> dict | None:
    try:
        state = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        return None  # the runner is gone: a stale file
    return state
