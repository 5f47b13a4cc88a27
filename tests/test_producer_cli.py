"""The command line without a broker: options, defaults, stat lines, delivery failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError

from producer.cli import main
from producer.sinks import HOLD_MS


class _Delivered:
    def add_callback(self, callback: Callable[[object], None]) -> None:
        callback(None)

    def add_errback(self, callback: object) -> None:
        pass


class _Expired:
    def add_callback(self, callback: object) -> None:
        pass

    def add_errback(self, callback: Callable[[BaseException], None]) -> None:
        callback(KafkaTimeoutError("Expiring 1 record(s): 20000 ms has passed"))


class FakeProducer:
    """Stands in for kafka.KafkaProducer: delivers `good` records, then every one expires."""

    good = 500
    instances: list[FakeProducer] = []

    def __init__(self, **config: object) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        FakeProducer.instances.append(self)

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> object:
        self.sent.append((topic, key, value))
        return _Delivered() if len(self.sent) <= self.good else _Expired()

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    import kafka

    FakeProducer.instances = []
    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    return FakeProducer


def test_cli_when_deliveries_fail_then_stops_reports_and_exits_1(
    fake_kafka: type[FakeProducer], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["synthetic", "--seed", "1", "--rate", "0", "--max-events", "100000"]
    assert main([*argv, "--stats-every", "0"]) == 1
    (producer,) = fake_kafka.instances
    assert len(producer.sent) == fake_kafka.good + 1  # stopped at the first failure
    err = capsys.readouterr().err
    assert "done (failed)" in err
    assert "error: delivery to Kafka at 127.0.0.1:9092 failed: KafkaTimeoutError" in err


def test_cli_when_kafka_then_idempotent_acks_all_compressed_and_keyed_by_ticker(
    fake_kafka: type[FakeProducer],
) -> None:
    argv = ["synthetic", "--seed", "1", "--rate", "0", "--max-events", "200"]
    assert main([*argv, "--stats-every", "0", "--topic-prefix", "x."]) == 0
    (producer,) = fake_kafka.instances
    config = producer.config
    assert config["enable_idempotence"] is True and config["acks"] == "all"
    assert config["compression_type"] in ("lz4", "gzip")  # what Flink's connector can read
    assert config["linger_ms"] > 0 and config["batch_size"] >= 65536
    # Holds while brokers are down: batches are retried, never expired (the hold fault test on
    # the cluster proves it); one send() attempt waits 15 s for metadata, then is retried.
    assert config["delivery_timeout_ms"] == HOLD_MS and config["max_block_ms"] == 15_000
    topics = {topic for topic, _, _ in producer.sent}
    assert topics == {"x.trades", "x.orderbook", "x.market_status"}
    for _, key, value in producer.sent:
        assert key == json.loads(value)["ticker"].encode()


def test_cli_when_running_then_stat_lines_and_summary_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["synthetic", "--seed", "2", "--rate", "1500", "--max-events", "600"]
    assert main([*argv, "--stats-every", "0.1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    stat_lines = [line for line in err.splitlines() if "/s)" in line and "sent" in line]
    assert stat_lines, err
    assert "at 2026-11-26 10:0" in stat_lines[-1]  # the session clock, Moscow time
    assert "done (max-events)" in err and "trades 600," in err
    assert "seed 2, session start 2026-11-26 10:00:00+03:00" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["synthetic", "--tickers", "SBER,AAPL"],
        ["synthetic", "--start", "tomorrow"],
        ["synthetic", "--max-events", "0"],
        ["synthetic", "--accelerate", "-1"],
        ["replay"],
        ["nonsense"],
    ],
)
def test_cli_when_bad_options_then_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_cli_when_out_names_another_topics_file_then_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synthetic", "--out", str(tmp_path / "orderbook.jsonl")]) == 2
    assert "that name is kept for the orderbook records" in capsys.readouterr().err


def test_cli_when_start_given_then_session_clock_starts_there(tmp_path: Path) -> None:
    argv = ["synthetic", "--seed", "3", "--start", "2026-11-26T09:45:00+03:00"]
    assert main([*argv, "--max-events", "50", "--stats-every", "0", "--out", str(tmp_path)]) == 0
    phases = [json.loads(line)["phase"] for line in (tmp_path / "market_status.jsonl").open()]
    assert phases == ["closed", "opening_auction", "trading"]
