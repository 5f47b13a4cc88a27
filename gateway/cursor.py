"""Event ids: where a client is in each stream, as Kafka positions.

An id is one segment per stream, `<stream>:<o0>.<o1>...`, joined by commas, where `oN` is the next
offset of partition N the client has not seen, e.g. `candles_1m:0.418.7,signals:3.0.12`.
Ids compose: the page joins the `cursor` of each history response into one Last-Event-ID.
Offsets survive a gateway restart, so a resume works against a new gateway process too.
"""

from __future__ import annotations

import re

from gateway.catalog import STREAM_NAME

Cursor = dict[str, dict[int, int]]  # stream -> partition -> next offset

MAX_CURSOR_CHARS = 4096
MAX_OFFSET = 2**63 - 1
_SEGMENT = re.compile(rf"({STREAM_NAME.pattern}):(\d{{1,19}}(?:\.\d{{1,19}}){{0,255}})")


class CursorError(ValueError):
    pass


def encode_segment(stream: str, positions: dict[int, int]) -> str:
    return stream + ":" + ".".join(str(positions[p]) for p in sorted(positions))


def encode(cursor: Cursor) -> str:
    return ",".join(encode_segment(stream, pos) for stream, pos in cursor.items() if pos)


def decode(text: str) -> Cursor:
    """Parse an id; raise CursorError with a reason a person can act on."""
    if len(text) > MAX_CURSOR_CHARS:
        raise CursorError(f"event id longer than {MAX_CURSOR_CHARS} characters")
    cursor: Cursor = {}
    if not text.strip():
        return cursor
    for segment in text.split(","):
        match = _SEGMENT.fullmatch(segment.strip())
        if match is None:
            raise CursorError(
                f"event id segment {segment[:80]!r} is not <stream>:<offset>[.<offset>...]"
            )
        stream, offsets = match.groups()
        if stream in cursor:
            raise CursorError(f"event id names stream {stream!r} twice")
        values = [int(o) for o in offsets.split(".")]
        if any(v > MAX_OFFSET for v in values):
            raise CursorError("event id offset out of range")
        cursor[stream] = dict(enumerate(values))
    return cursor
