"""Where the project keeps its generated files (all under ignored folders)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MOEX_CACHE_DIR", ROOT / ".cache"))
JARS = CACHE / "jars"
KAFKA_JARS = JARS / "kafka"
FLINK_JARS = JARS / "flink"
RUN = Path(os.environ.get("MOEX_RUN_DIR", ROOT / ".run"))
SQL_DIR = ROOT / "sql"
TOPICS_FILE = ROOT / "topics.toml"


def connector_jar() -> Path:
    jars = sorted(FLINK_JARS.glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise FileNotFoundError(
            f"no Kafka connector jar in {FLINK_JARS}: run `make jars` (Maven Central via mvn)"
        )
    return jars[-1]
