"""The catalog of result streams, as written by the runner, plus the built-in market_status."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("gateway.catalog")

STREAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Column names that hold instants when the catalog gives no types (hand-written catalogs).
TIME_COLUMN_NAMES = frozenset({"window_start", "window_end", "ts", "start_ts", "end_ts"})

MARKET_STATUS = {
    "name": "market_status",
    "topic": "moex.market_status",
    "live_topic": None,
    "description": "trading phase per ticker, or for the whole market when ticker is '*'",
    "grain": ["event_id"],
    "guarantee": "at-least-once",
    "dedup_key": "event_id",
    "columns": [
        {"name": "event_id", "type": "STRING"},
        {"name": "ticker", "type": "STRING"},
        # epoch milliseconds on the topic; the gateway sends it as ISO-8601 like every instant
        {"name": "ts", "type": "TIMESTAMP_LTZ(3)"},
        {"name": "phase", "type": "STRING"},
    ],
}


@dataclass(frozen=True)
class StreamSpec:
    name: str
    topic: str  # the exactly-once result topic
    live_topic: str | None  # an at-least-once copy with lower latency, when the job writes one
    description: str
    grain: tuple[str, ...]
    guarantee: str
    dedup_key: str | None
    columns: tuple[dict[str, str], ...]

    @property
    def source_topic(self) -> str:
        """The topic the gateway reads: the live copy when there is one."""
        return self.live_topic or self.topic

    @property
    def time_columns(self) -> frozenset[str]:
        typed = {
            c["name"] for c in self.columns if c.get("type", "").upper().startswith("TIMESTAMP")
        }
        return frozenset(typed) if self.columns else TIME_COLUMN_NAMES

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "topic": self.topic,
            "live_topic": self.live_topic,
            "source_topic": self.source_topic,
            "description": self.description,
            "grain": list(self.grain),
            "guarantee": self.guarantee,
            "dedup_key": self.dedup_key,
            "columns": [dict(c) for c in self.columns],
        }


def spec_from_entry(entry: dict[str, Any]) -> StreamSpec:
    name = entry.get("name")
    topic = entry.get("topic")
    if not isinstance(name, str) or not STREAM_NAME.fullmatch(name):
        raise ValueError(f"stream name {name!r} is not [a-z][a-z0-9_]*")
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"stream {name}: no topic")
    live_topic = entry.get("live_topic") or None
    dedup_key = entry.get("dedup_key") or None
    if live_topic and not dedup_key:
        # An at-least-once copy without an id to de-duplicate on would show repeats.
        log.warning("stream %s: live_topic without dedup_key; reading %s instead", name, topic)
        live_topic = None
    columns = tuple(
        {"name": str(c["name"]), "type": str(c.get("type", ""))}
        for c in entry.get("columns") or ()
        if isinstance(c, dict) and "name" in c
    )
    return StreamSpec(
        name=name,
        topic=topic,
        live_topic=live_topic,
        description=str(entry.get("description") or ""),
        grain=tuple(str(g) for g in entry.get("grain") or ()),
        guarantee=str(entry.get("guarantee") or "unknown"),
        dedup_key=dedup_key,
        columns=columns,
    )


def load_catalog(path: Path) -> dict[str, StreamSpec]:
    """Streams by name; a missing file gives the built-ins only, a bad entry is skipped."""
    entries: list[Any] = []
    try:
        doc = json.loads(Path(path).read_text())
        entries = list(doc.get("outputs") or [])
    except FileNotFoundError:
        log.warning("no catalog at %s yet: serving market_status only", path)
    except (OSError, ValueError, AttributeError) as exc:
        log.error("catalog %s unreadable (%s): serving market_status only", path, exc)
    specs: dict[str, StreamSpec] = {}
    for entry in entries:
        try:
            spec = spec_from_entry(entry)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("catalog %s: skipping entry: %s", path, exc)
            continue
        specs[spec.name] = spec
    specs.setdefault("market_status", spec_from_entry(MARKET_STATUS))
    return specs
