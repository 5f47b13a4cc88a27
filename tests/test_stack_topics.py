"""Where topics come from: an output's `-- topic:` header (no second file to edit), inputs and
overrides in topics.toml; and what the broker says when a topic cannot be created."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from moex.paths import SQL_DIR, TOPICS_FILE
from stack.topics import declaration_errors, ensure_topics, load_topics
from tests.examples import obv


def copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(SQL_DIR, target)
    return target


def test_topics_when_declared_then_every_override_names_an_sql_output_and_inputs_are_listed() -> (
    None
):
    assert declaration_errors() == []
    topics = load_topics()
    assert {"moex.trades", "moex.orderbook", "moex.market_status", "moex.dlq"} <= set(topics)
    # Every output and `_live` twin of sql/ has its topic, from its header.
    from runner.sqlfiles import discover, load

    for path in discover(SQL_DIR):
        sql_file = load(path)
        if sql_file.is_output:
            topic = topics[sql_file.header["topic"]]
            assert (topic.declared_in, topic.line) == (path, sql_file.header_line["topic"])
            if "twin" in sql_file.header:
                assert f"{sql_file.header['topic']}_live" in topics


def test_topics_when_an_sql_file_is_added_then_its_header_declares_its_topic_with_defaults(
    tmp_path: Path,
) -> None:
    sql_dir = copy_sql(tmp_path)
    path = obv.write(sql_dir)
    topics = load_topics(sql_dir=sql_dir)
    spec = topics["moex.obv_1m"]
    assert (spec.partitions, spec.retention_ms, spec.cleanup_policy) == (3, 604800000, "delete")
    assert (spec.declared_in, spec.line) == (path, 3)
    # An override in topics.toml applies to a header-declared topic.
    assert topics["moex.candles_1s"].retention_ms == 86400000
    # Dropping the file drops the declaration (the broker keeps the topic and its data).
    path.unlink()
    assert "moex.obv_1m" not in load_topics(sql_dir=sql_dir)


def test_topics_when_an_override_names_no_output_then_it_is_reported_with_its_line(
    tmp_path: Path,
) -> None:
    toml = tmp_path / "topics.toml"
    text = TOPICS_FILE.read_text() + '\n[overrides."moex.rsi_99"]\npartitions = 6\n'
    toml.write_text(text)
    line = text.splitlines().index('[overrides."moex.rsi_99"]') + 1
    errors = declaration_errors(toml)
    assert len(errors) == 1
    assert errors[0].startswith(f"{toml}:{line}:1: override of `moex.rsi_99`, which no sql/ output")


@pytest.mark.kafka
def test_ensure_topics_when_name_invalid_then_refused_with_broker_reason_and_valid_created(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from kafka.admin import KafkaAdminClient

    sql_dir = copy_sql(tmp_path)
    prefix = f"t{uuid.uuid4().hex[:8]}."
    obv.write(sql_dir)
    specs = [s.renamed(prefix) for s in load_topics(sql_dir=sql_dir).values()]
    good = next(s for s in specs if s.name.endswith("obv_1m"))
    bad = replace(good, name=f"{prefix}bad name!")
    # Validation only: the broker's answer, nothing created.
    report = ensure_topics(kafka_bootstrap, [good, bad], validate_only=True)
    assert report.created == [good.name]
    assert set(report.refused) == {bad.name}
    assert "Topic name is invalid" in report.refused[bad.name]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert good.name not in admin.list_topics()
        report = ensure_topics(kafka_bootstrap, [good, bad])
        assert report.created == [good.name] and set(report.refused) == {bad.name}
        assert good.name in admin.list_topics()
        # A second pass finds it there.
        assert ensure_topics(kafka_bootstrap, [good]).existing == [good.name]
    finally:
        admin.delete_topics([good.name])
        admin.close()
