"""Every check a start, a check or a reload makes before a job is touched: headers and
statements, Flink's parser and planner, grains, and the sink topics on the broker. Each problem
is a `file:line:col: message`; `report` prints them the way every command does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from runner import pipeline
from runner.catalog import check_grains
from runner.connectors import Connectors
from runner.errors import java_message
from runner.flink_env import create_table_env
from runner.plan import Plan, PlanError, build, explain_each, load_plan
from runner.settings import Settings
from runner.sqlfiles import SqlFileError
from stack.kafka import port_open
from stack.topics import DEFAULT_PREFIX, TopicSpec, ensure_topics, load_topics


def report(errors: list[SqlFileError]) -> int:
    """Print every problem, then what it means; the exit code of a refused start (2)."""
    for err in errors:
        print(err, file=sys.stderr)
    print(f"runner: {len(errors)} problem(s) in sql/; nothing was started", file=sys.stderr)
    return 2


def validate(
    settings: Settings, connectors: Connectors | None = None
) -> tuple[object, Plan, pipeline.Pipeline | None]:
    """Structure (headers, statements) then Flink's own parser and planner.

    Returns (t_env, plan, pipeline): the planner's translation, ready to submit (planned once).
    Raises PlanError listing every problem as `file:line:col: message`.
    """
    plan = load_plan(settings)
    t_env = create_table_env(settings)
    connectors = connectors or Connectors(settings)
    errors: list[SqlFileError] = []
    statement_set = None
    try:
        statement_set = build(t_env, plan, connectors, settings, on_error=errors.append)
    except PlanError:
        pass
    if not errors:
        errors += check_grains(t_env, plan)
    compiled = None
    if not errors and plan.outputs:
        try:
            compiled = pipeline.translate(t_env, statement_set)
        except Exception as exc:
            errors += explain_each(t_env, plan) or [
                SqlFileError(settings.sql_dir, 1, 1, f"the outputs together: {java_message(exc)}")
            ]
    if errors:
        raise PlanError(errors)
    return t_env, plan, compiled


def sink_topics(plan: Plan, settings: Settings) -> dict[str, TopicSpec]:
    """The topics the plan's sinks write, as declared by their files' headers (+ overrides)."""
    declared = load_topics(sql_dir=settings.sql_dir)
    specs = {}
    for output in plan.outputs:
        for name in (output.name, output.live_name):
            if name:
                spec = declared[DEFAULT_PREFIX + name].renamed(settings.topic_prefix)
                specs[spec.name] = spec
    return specs


def topic_errors(
    plan: Plan,
    settings: Settings,
    create: bool,
    timeout_s: float = 30.0,
    say: Callable[[str], None] = print,
) -> list[SqlFileError]:
    """Create the sink topics that are missing (or, create=False, ask the broker whether it
    would); each refusal located at the header line that declares the topic."""
    specs = sink_topics(plan, settings)
    try:
        report = ensure_topics(
            settings.bootstrap,
            specs.values(),
            settings.topic_replication_factor,
            validate_only=not create,
            timeout_s=timeout_s,
        )
    except RuntimeError as exc:
        return [SqlFileError(settings.sql_dir, 1, 1, f"sink topics not checked: {exc}")]
    if report.created and create:
        say(f"runner: created topics {', '.join(report.created)}")
    return [
        SqlFileError(
            specs[name].declared_in,
            specs[name].line,
            1,
            f"topic {name} cannot be created: {reason}",
        )
        for name, reason in report.refused.items()
    ]


def broker_reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    return port_open(host or "127.0.0.1", int(port))
