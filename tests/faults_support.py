"""The fault tests' helpers under their old names; they live in tests/faults/ (one module per
concern) and tests/golden/compare.py (the comparator). New code imports from there."""

from tests.faults.job import RunnerJob, artifacts_on_failure, keep_artifacts
from tests.faults.kafka_io import (
    Record,
    TopicTail,
    committed_source_offsets,
    create_prefixed_topics,
    delete_topics,
    end_offsets,
    new_prefix,
    publish_lines,
    read_topic,
    topic_names,
)
from tests.faults.oracle import (
    ReplayOracle,
    expected_candles_and_liquidity,
    qty_by_ticker,
    volume_by_ticker,
)
from tests.faults.session import (
    EVENING,
    SENTINEL_GAP_MS,
    TICKERS,
    Feeder,
    Session,
    dumps,
    merged_input,
    synthetic_session,
)
from tests.golden.compare import (
    Comparison,
    compare,
    end_ms,
    iso,
    iso_ms,
    load_jsonl,
    same_row,
    same_value,
)
from tests.processes import Group, wait_for

__all__ = [
    "EVENING", "SENTINEL_GAP_MS", "TICKERS", "Comparison", "Feeder", "Group", "Record",
    "ReplayOracle", "RunnerJob", "Session", "TopicTail", "artifacts_on_failure",
    "committed_source_offsets", "compare", "create_prefixed_topics", "delete_topics", "dumps",
    "end_ms", "end_offsets", "expected_candles_and_liquidity", "iso", "iso_ms", "keep_artifacts",
    "load_jsonl", "merged_input", "new_prefix", "publish_lines", "qty_by_ticker", "read_topic",
    "same_row", "same_value", "synthetic_session", "topic_names", "volume_by_ticker", "wait_for",
]  # fmt: skip
