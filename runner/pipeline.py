"""The job planned once: the planner's transformations validate the SQL and are what runs.

PyFlink's `StatementSet.execute()` plans the whole statement set again after `explain()` has
planned it for validation; on this job planning is the longest step of a start or a reload.
Here the statement set is translated once; the same transformations give the JobGraph (whose
operator ids decide what a savepoint restores) and are submitted as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Operators that keep no state whose layout follows the rows (a source keeps its Kafka offsets,
# a sink its transactions): a changed projection there restores fine.
STATELESS = (
    "Calc", "PythonCalc", "Source:", "StreamRecordTimestampInserter", "WatermarkAssigner",
    "LocalWindowAggregate", "WindowTableFunction", "Union", "Expand", "ConstraintEnforcer",
)  # fmt: skip
# The planner numbers its nodes (`GlobalWindowAggregate[101]`) afresh at every planning.
NODE_NUMBER = re.compile(r"\[\d+\]")


def translate(t_env, statement_set) -> Pipeline:
    """Optimise and translate every INSERT of the statement set (raises the planner's error)."""
    t_env._before_execute()  # what StatementSet.execute() does first: pipeline jars
    j_tenv = t_env._j_tenv
    operations = statement_set._j_statement_set.getOperations()
    return Pipeline(t_env, statement_set, j_tenv.getPlanner().translate(operations))


@dataclass
class Pipeline:
    t_env: object
    statement_set: object  # for explain() in a dry run
    transformations: object  # java.util.List<Transformation<?>>
    _graph: object | None = field(default=None, repr=False)

    def _executor(self):
        from pyflink.util.java_utils import get_field_value

        # PyFlink wraps it in ChainingOptimizingExecutor (Python operator chaining).
        return get_field_value(self.t_env._j_tenv, "execEnv")

    def _stream_graph(self):
        config = self.t_env._j_tenv.getConfig()
        # The job name is pipeline.name of the config; the default here is only a fallback.
        return self._executor().createPipeline(self.transformations, config, "moex-analytics")

    def output_operators(self, names: list[str]) -> dict[str, dict[str, str]]:
        """{operator id: what it computes} of each output's sink and everything upstream.

        Flink SQL sets no operator uids: an operator's id is a hash of its place in the graph
        (StreamGraphHasherV2, as the JobGraph computes it), and a savepoint's state goes back to
        the operator with the same id. The description (its grouping, window, select list, with
        the planner's node numbers removed) tells whether the state it holds has the same shape.
        """
        from pyflink.java_gateway import get_gateway

        graph = self._stream_graph()
        jvm = get_gateway().jvm
        hashes = jvm.org.apache.flink.streaming.api.graph.StreamGraphHasherV2()
        hashes = hashes.traverseStreamGraphAndGenerateHashes(graph)
        nodes = {int(n.getId()): n for n in graph.getStreamNodes().toArray()}
        inputs = {i: [int(e.getSourceId()) for e in n.getInEdges()] for i, n in nodes.items()}
        ids = {i: bytes(hashes.get(i)).hex() for i in nodes}
        shapes = {
            i: NODE_NUMBER.sub("", f"{n.getOperatorName()}: {n.getOperatorDescription()}")
            for i, n in nodes.items()
        }
        result = {}
        for name in names:
            writer = re.compile(rf"(?<![\w]){re.escape(name)}\[\d+\]: Writer")
            todo = [i for i, n in nodes.items() if writer.search(str(n.getOperatorName()))]
            seen: set[int] = set()
            while todo:
                node = todo.pop()
                if node not in seen:
                    seen.add(node)
                    todo.extend(inputs[node])
            result[name] = {ids[i]: shapes[i] for i in sorted(seen)}
        return result

    def submit(self):
        """Start the job with the table config as it is now (restore path included)."""
        from pyflink.common.job_client import JobClient

        return JobClient(self._executor().executeAsync(self._stream_graph()))


@dataclass
class RestoreReport:
    restored: list[str]  # every operator known with the same shape: all state carries on
    fresh: list[str]  # some operators new: they start empty
    # output -> operators whose id is known but whose shape changed: the savepoint holds state
    # of another layout for them, which Flink refuses to restore (StateMigrationException)
    incompatible: dict[str, list[str]]
    dropped: list[str]  # outputs of the old job that are gone


def restore_report(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> RestoreReport:
    """What a savepoint of the `old` job gives each output of the `new` one (see reload.py)."""
    known = {op: shape for ops in old.values() for op, shape in ops.items()}
    report = RestoreReport([], [], {}, [name for name in old if name not in new])
    for name, ops in new.items():
        changed = [
            shape
            for op, shape in ops.items()
            if op in known
            and known[op] != shape
            and not shape.startswith(STATELESS)
            and ": Writer" not in shape
            and ": Committer" not in shape
        ]
        if changed:
            report.incompatible[name] = changed
        elif all(op in known for op in ops):
            report.restored.append(name)
        else:
            report.fresh.append(name)
    return report
