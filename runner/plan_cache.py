"""Compiled plans of replays, cached: a replay of unchanged SQL skips the optimiser.

Planning is most of a short replay's cost (docs/performance.md, Engine). Flink can write the
optimised plan of a statement set as JSON (`StatementSet.compile_plan()`, the "compiled plan"
of FLIP-190) and run it again later (`TableEnvironment.load_plan`) without parsing, validating
or optimising the SQL. A replay's plan depends only on its SQL texts (after the connectors are
substituted), the planner's configuration, the Flink version and the UDFs' code (their result
types are in the plan); the key below hashes all of them, so any edit plans afresh. The input
and output paths of a replay differ from run to run: they are written into the cached JSON as
a placeholder and put back on loading.

Only replays use it. The live job's operator ids would differ between a cached and a freshly
planned run, and its state restore relies on them staying as they were.

Field notes (PyFlink 2.2.1): `CompiledPlan.execute()` of a plan from `TableEnvironment.load_plan`
fails with "Method _before_execute([]) does not exist" (pyflink hands the Java environment to
the Python wrapper), so `execute` below calls the Java plan itself after the Python
environment's `_before_execute`; temporary (Python) functions are not in a compiled plan and
must be created before `load_plan`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from moex.paths import CACHE, ROOT
from runner.connectors import Connectors
from runner.plan import Plan, build
from runner.settings import Settings

PLANS = CACHE / "plans"
# Options that change from run to run and not the plan (the work folder in the others, e.g.
# the checkpoint folder, is replaced by the placeholder).
VOLATILE = ("rest.port", "python.loopback-server.address")
FUNCTION = re.compile(r"^\s*CREATE\s+(TEMPORARY\s+)?(SYSTEM\s+)?FUNCTION\b", re.IGNORECASE)
PLACEHOLDER = "@@REPLAY_WORK@@"
UDF_DIR = ROOT / "udfs"


class _Recorder:
    """Stands in for a TableEnvironment and its statement set: `build` hands it the exact
    statements it would run (connectors substituted), and nothing is executed."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def execute_sql(self, text: str) -> None:
        self.texts.append(text)

    def create_statement_set(self) -> _Recorder:
        return self

    def add_insert_sql(self, text: str) -> None:
        self.texts.append(text)


def statements(plan: Plan, connectors: Connectors, settings: Settings) -> list[str]:
    recorder = _Recorder()
    build(recorder, plan, connectors, settings, twins=False)
    return recorder.texts


def _uncommented(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def submit(t_env, plan: Plan, connectors: Connectors, settings: Settings, config: dict, work: Path):
    """Submit the replay's job: from the cached compiled plan when there is one, else planned
    (and its compiled plan cached). Returns (TableResult, "cached plan" | "planned")."""
    from pyflink.table import PlanReference

    texts = statements(plan, connectors, settings)
    # Every option set on the environment (base and replay configuration), not only `config`.
    options = dict(t_env.get_config().get_configuration().to_dict())
    options.update(config)
    plan_key = key(texts, {k: v for k, v in options.items() if k not in VOLATILE}, work)
    cached = load(plan_key, work)
    if cached is not None:
        for text in texts:
            if FUNCTION.match(_uncommented(text)):
                t_env.execute_sql(text)
        compiled = t_env.load_plan(PlanReference.from_json_string(cached))
        return execute(t_env, compiled), "cached plan"
    statement_set = build(t_env, plan, connectors, settings, twins=False)
    try:
        compiled = statement_set.compile_plan()
    except Exception:  # a node without a JSON form: run it as planned, cache nothing
        return statement_set.execute(), "planned"
    store(plan_key, compiled.as_json_string(), work)
    return execute(t_env, compiled), "planned"


def key(texts: list[str], config: dict[str, str], work: Path) -> str:
    """A hash of everything the plan depends on; `work` is replaced by the placeholder."""
    import pyflink.version

    root = str(work.resolve())
    digest = hashlib.sha256()
    for part in (
        pyflink.version.__version__,
        json.dumps(config, sort_keys=True).replace(root, PLACEHOLDER),
        *(t.replace(root, PLACEHOLDER) for t in texts),
        *(f"{p.name}:{p.read_text()}" for p in sorted(UDF_DIR.glob("*.py"))),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def load(plan_key: str, work: Path) -> str | None:
    path = PLANS / f"{plan_key}.json"
    if not path.exists():
        return None
    return path.read_text().replace(PLACEHOLDER, str(work.resolve()))


def store(plan_key: str, plan_json: str, work: Path) -> None:
    PLANS.mkdir(parents=True, exist_ok=True)
    path = PLANS / f"{plan_key}.json"
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(plan_json.replace(str(work.resolve()), PLACEHOLDER))
    partial.replace(path)  # atomic: a concurrent replay reads the old file or the whole new one


def execute(t_env, compiled):
    """Run a compiled plan (see the field note above) and return its TableResult."""
    from pyflink.table import TableResult

    t_env._before_execute()
    return TableResult(compiled._j_compiled_plan.execute())
