"""The SSE wire format, and a row's event encoded once for every client that receives it.

One event:  id: <cursor>  event: <stream name>  data: <row JSON>, each line ending in `\n`, and a
blank line. At 1,000 clients the gateway sends each row a thousand times: the bytes are made once
per (stream, row) and shared, and only a client on several streams assembles its own `id:` line.
"""

from __future__ import annotations

from gateway.rows import Entry


def encode_event(
    event: str, data: str, event_id: str | None = None, retry_ms: int | None = None
) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    tail = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"{head}event: {event}\ndata: {data}\n{tail}\n"


class Frame:
    """One live row of one stream, as bytes every subscriber of that row can send as they are.

    `segment` is the stream's cursor segment right after this row was ingested. Rows reach a live
    client in ingest order, so every row of its filter before this one has been sent to it and
    every later one lies at or past this position: the segment is a correct resume point for any
    ticker filter, and the same text for every client.
    """

    __slots__ = ("stream", "entry", "segment", "body", "single")

    def __init__(self, stream: str, entry: Entry, segment: str) -> None:
        self.stream = stream
        self.entry = entry
        self.segment = segment
        self.body = encode_event(stream, entry.data).encode()  # without an id
        self.single = b"id: " + segment.encode() + b"\n" + self.body  # for one-stream clients

    def with_id(self, event_id: str) -> bytes:
        return b"id: " + event_id.encode() + b"\n" + self.body
