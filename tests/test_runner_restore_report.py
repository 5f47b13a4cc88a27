"""The reload's restore report from two jobs' operators (ids and shapes, as
runner.pipeline.Pipeline.output_operators gives them); the live run is in test_runner_kafka."""

from __future__ import annotations

from runner.pipeline import restore_report

BARS = "GlobalWindowAggregate: groupBy=[ticker], select=[ticker, LAST_VALUE(price) AS close]"
OLD = {
    "candles_1s": {"a1": "Source: trades_raw", "a2": BARS, "a3": "candles_1s: Writer"},
    "anomalies": {"a1": "Source: trades_raw", "b2": "Match: pattern", "b3": "anomalies: Writer"},
}


def test_restore_report_when_graph_unchanged_then_every_output_restores() -> None:
    report = restore_report(OLD, OLD)
    assert report.restored == ["candles_1s", "anomalies"]
    assert report.fresh == [] and report.incompatible == {} and report.dropped == []


def test_restore_report_when_output_added_and_one_dropped_then_fresh_and_dropped_named() -> None:
    new = {
        "candles_1s": OLD["candles_1s"],
        "obv_1m": {"a1": "Source: trades_raw", "c2": "OverAggregate: sum", "c3": "obv: Writer"},
    }
    report = restore_report(OLD, new)
    assert (report.restored, report.fresh, report.dropped) == (
        ["candles_1s"],
        ["obv_1m"],
        ["anomalies"],
    )


def test_restore_report_when_a_stateful_operator_keeps_its_id_but_changes_shape_then_incompatible(
    ) -> None:  # fmt: skip
    wider = BARS.replace("AS close]", "AS close, SUM(qty) AS volume]")
    new = {
        "candles_1s": {**OLD["candles_1s"], "a2": wider},
        # A stateless projection that changes in place restores fine.
        "anomalies": {**OLD["anomalies"], "a1": "Source: trades_raw, project=[ticker]"},
    }
    report = restore_report(OLD, new)
    assert report.incompatible == {"candles_1s": [wider]}
    assert report.restored == ["anomalies"]
