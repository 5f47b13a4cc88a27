"""In-memory state shared by all clients: per-ticker buffers, positions, subscribers.

Everything here runs on the event loop thread (the Kafka readers hand batches over with
`call_soon_threadsafe`), so a subscription's snapshot and its registration for live rows happen
in one step: no row falls between them and none is delivered twice.

Over 300 lines: the buffers, the resume positions and the subscribers are one piece of
event-loop state (a snapshot and its registration must happen in one step), kept in one module.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.catalog import StreamSpec
from gateway.cursor import Cursor, encode, encode_segment
from gateway.frames import Frame
from gateway.rows import Entry
from gateway.settings import Settings

WILDCARD_TICKER = "*"  # a market_status row for the whole market applies to every ticker
DEDUP_MEMORY = 100_000  # event ids remembered per at-least-once stream
CONTACT_WINDOW_S = 15.0  # the broker counts as reachable if it answered this recently
MAX_EVENTS_PER_WRITE = 500
CATCH_UP_POLL_S = 0.02


class TickerBuffer:
    """The latest rows of one ticker, and where in each partition the evicted ones end."""

    __slots__ = ("rows", "evicted_next")

    def __init__(self) -> None:
        self.rows: deque[Entry] = deque()
        self.evicted_next: dict[int, int] = {}

    def append(self, entry: Entry, max_rows: int) -> None:
        self.rows.append(entry)
        while len(self.rows) > max_rows:
            old = self.rows.popleft()
            self.evicted_next[old.partition] = old.offset + 1


class StreamState:
    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.start: dict[int, int] = {}  # first offset read by this process, per partition
        self.position: dict[int, int] = {}  # next offset to ingest
        self.backfill_end: dict[int, int] = {}
        self.buffers: dict[str, TickerBuffer] = {}
        self.first_seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.seq = 0
        self.subscribers: set[Subscriber] = set()
        # The same clients by their ticker filter (None: every ticker), so a row is offered only
        # to the clients that want it.
        self.by_ticker: dict[str | None, set[Subscriber]] = {}
        self.assigned = asyncio.Event()
        self.status = "starting"
        self.error: str | None = None
        self.end_offsets: dict[int, int] = {}  # as the broker last reported them
        self.last_contact: float | None = None
        self.records = 0
        self.duplicates = 0
        self.bad_records = 0

    @property
    def backfilled(self) -> bool:
        return bool(self.position) and all(
            self.position.get(p, 0) >= end for p, end in self.backfill_end.items()
        )

    def buffers_for(self, ticker: str | None) -> list[TickerBuffer]:
        if ticker is None:
            return list(self.buffers.values())
        return [b for t in (ticker, WILDCARD_TICKER) if (b := self.buffers.get(t)) is not None]

    def coverage(self, partition: int, buffers: Iterable[TickerBuffer]) -> int:
        """The first offset from which every row of these buffers' tickers is still in memory."""
        start = self.start.get(partition, 0)
        return max([start, *(b.evicted_next.get(partition, 0) for b in buffers)])


class Subscriber:
    """One SSE connection: its filter, its position in every stream, its bounded queue.

    Until `go_live` (while the resume is sent) the id of each event is made from this client's
    own `positions`. From then on it sends only shared frames, whose ids are the streams' own
    positions: see Frame. A client on several streams keeps the latest segment of each.
    """

    def __init__(self, streams: list[str], ticker: str | None, max_pending: int) -> None:
        self.streams = streams
        self.ticker = ticker
        self.max_pending = max_pending
        self.positions: Cursor = {}
        self.live_from: Cursor = {}  # each stream's position when this client subscribed
        self.segments: dict[str, str] = {}
        self.pending: deque[Frame | bytes] = deque()  # rows, or shared bytes (heartbeats)
        self.wakeup = asyncio.Event()
        self.closed_reason: str | None = None
        self.sending_since: float | None = None  # monotonic time the current write began
        self.on_stall: Callable[[], None] | None = None
        # Set by the response while it waits with nothing pending: the hub then writes a batch to
        # the socket at once, without waking the client's task (see gateway.sse.SseResponse).
        self.write_now: Callable[[bytes], None] | None = None

    def wants(self, ticker: str) -> bool:
        return self.ticker is None or ticker == self.ticker or ticker == WILDCARD_TICKER

    def advance(self, stream: str, entry: Entry) -> bool:
        """True (and move the position on) when the client has not had this row yet."""
        positions = self.positions.setdefault(stream, {})
        if entry.offset < positions.get(entry.partition, 0):
            return False
        positions[entry.partition] = entry.offset + 1
        return True

    def event_id(self) -> str:
        return encode(self.positions)

    def go_live(self) -> None:
        """The resume (Kafka reads, rows from memory) is sent: every row up to `live_from` of
        this client's filter is with it, and the queue holds what came after."""
        self.segments = {
            stream: encode_segment(stream, position) if position else ""
            for stream, position in self.live_from.items()
        }

    def frame_bytes(self, frame: Frame | bytes) -> bytes:
        if isinstance(frame, bytes):
            return frame  # an event without an id (heartbeat): the same bytes for every client
        if len(self.streams) == 1:
            return frame.single  # the very bytes every other client of this stream gets
        self.segments[frame.stream] = frame.segment
        return frame.with_id(",".join(s for s in self.segments.values() if s))

    def take_chunk(self, limit: int = MAX_EVENTS_PER_WRITE) -> bytes:
        """Up to `limit` waiting events as the bytes of one write."""
        pending = self.pending
        if len(pending) == 1:
            return self.frame_bytes(pending.popleft())
        count = min(len(pending), limit)
        return b"".join([self.frame_bytes(pending.popleft()) for _ in range(count)])

    def offer(self, items: list[Frame] | list[bytes], shared: bytes | None) -> bool:
        """Queue (or write at once) these events; False when that would overflow the queue.

        `shared` is the bytes of `items` for a one-stream client, made once per batch and filter.
        """
        pending = self.pending
        if len(pending) + len(items) > self.max_pending:
            return False
        if self.write_now is not None:
            if not pending and shared is not None and len(self.streams) == 1:
                self.write_now(shared)
                return True
            pending.extend(items)
            self.write_now(self.take_chunk(len(pending)))  # all of it: the task is asleep
            return True
        pending.extend(items)
        self.wakeup.set()
        return True

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.pending.clear()
            self.write_now = None
            self.wakeup.set()


@dataclass(frozen=True)
class ReplayRange:
    """Rows a resuming client missed that are no longer in memory: read them from Kafka."""

    stream: str
    partition: int
    start: int
    end: int  # exclusive


@dataclass
class Subscription:
    subscriber: Subscriber
    replay: list[ReplayRange]
    snapshot: list[tuple[str, Entry]]


class Hub:
    def __init__(self, settings: Settings, specs: dict[str, StreamSpec]) -> None:
        self.settings = settings
        self.streams: dict[str, StreamState] = {}
        self.clients = 0
        self.subscribers: set[Subscriber] = set()
        self.dropped_clients = 0
        self.replay_slots = asyncio.Semaphore(2)  # concurrent Kafka reads for resuming clients
        self.add_streams(specs.values())

    def add_streams(self, specs: Iterable[StreamSpec]) -> list[StreamState]:
        added = []
        for spec in specs:
            if spec.name not in self.streams:
                self.streams[spec.name] = state = StreamState(spec)
                added.append(state)
        return added

    # --- called by the Kafka readers (through the loop) ---

    def on_assigned(self, name: str, start: dict[int, int], backfill_end: dict[int, int]) -> None:
        state = self.streams[name]
        state.start = dict(start)
        state.position = dict(start)
        state.backfill_end = dict(backfill_end)
        state.status = "live" if state.backfilled else "backfilling"
        state.assigned.set()

    def on_contact(
        self, name: str, end_offsets: dict[int, int] | None, error: str | None = None
    ) -> None:
        state = self.streams[name]
        if error is not None:
            state.error = error
            return
        state.error = None
        state.last_contact = time.monotonic()
        if end_offsets is not None:
            state.end_offsets = end_offsets

    def on_status(self, name: str, status: str, error: str | None = None) -> None:
        state = self.streams[name]
        state.status = status
        state.error = error

    def ingest(
        self, name: str, entries: list[Entry], positions: dict[int, int], bad: int = 0
    ) -> None:
        state = self.streams[name]
        state.bad_records += bad
        accepted: list[Entry] = []
        frames: list[Frame] = []
        position = state.position
        for entry in entries:
            if entry.offset < state.position.get(entry.partition, 0):
                continue  # a reader that reconnected re-read it
            if entry.event_id is not None and self._is_duplicate(state, entry):
                state.duplicates += 1
                continue
            state.seq += 1
            entry.seq = state.seq
            buffer = state.buffers.get(entry.ticker)
            if buffer is None:
                buffer = state.buffers[entry.ticker] = TickerBuffer()
            buffer.append(entry, self.settings.buffer_rows)
            accepted.append(entry)
            position[entry.partition] = max(position.get(entry.partition, 0), entry.offset + 1)
            if state.subscribers:  # encoded here, once, with the stream's position after it
                frames.append(Frame(name, entry, encode_segment(name, position)))
        state.records += len(accepted)
        for partition, reported in positions.items():
            position[partition] = max(position.get(partition, 0), reported)
        if state.status == "backfilling" and state.backfilled:
            state.status = "live"
        if frames:
            self._fan_out(state, frames)

    def _is_duplicate(self, state: StreamState, entry: Entry) -> bool:
        assert entry.event_id is not None
        first = state.first_seen.get(entry.event_id)
        if first is not None:
            return first != (entry.partition, entry.offset)
        state.first_seen[entry.event_id] = (entry.partition, entry.offset)
        if len(state.first_seen) > DEDUP_MEMORY:
            state.first_seen.popitem(last=False)
        return False

    def _fan_out(self, state: StreamState, frames: list[Frame]) -> None:
        """Offer a batch to its clients: each filter's rows are picked, and their bytes joined,
        once per batch; a client waiting idle gets them in one write, at once."""
        for ticker, clients in list(state.by_ticker.items()):
            if ticker is None:
                selected = frames
            else:
                selected = [
                    f
                    for f in frames
                    if f.entry.ticker == ticker or f.entry.ticker == WILDCARD_TICKER
                ]
                if not selected:
                    continue
            shared = (
                selected[0].single if len(selected) == 1 else b"".join([f.single for f in selected])
            )
            self._offer(tuple(clients), selected, shared)

    def _offer(
        self, clients: Iterable[Subscriber], items: list[Frame] | list[bytes], shared: bytes
    ) -> None:
        for sub in clients:
            if sub.closed_reason is not None:
                continue
            if not sub.offer(items, shared):
                self.dropped_clients += 1
                sub.close(f"client too slow: more than {sub.max_pending} events waiting")

    def heartbeat(self, event: bytes) -> None:
        """One heartbeat event (no id) to every client, in order with its rows."""
        self._offer(tuple(self.subscribers), [event], event)

    # --- queries from the HTTP side ---

    def history(self, name: str, ticker: str | None, limit: int) -> tuple[list[Entry], str]:
        """The latest `limit` rows in ingest order, and the cursor that resumes right after them."""
        state = self.streams[name]
        buffers = state.buffers_for(ticker)
        if len(buffers) == 1:
            rows = list(buffers[0].rows)[-limit:]
        else:
            rows = sorted((e for b in buffers for e in list(b.rows)[-limit:]), key=lambda e: e.seq)[
                -limit:
            ]
        cursor = encode_segment(name, state.position) if state.position else ""
        return rows, cursor

    def tickers(self) -> list[str]:
        names = {t for s in self.streams.values() for t in s.buffers}
        return sorted(names - {WILDCARD_TICKER, ""})

    async def wait_assigned(self, names: Iterable[str], timeout_s: float) -> None:
        waits = [
            self.streams[n].assigned.wait() for n in names if not self.streams[n].assigned.is_set()
        ]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), timeout_s)
            except TimeoutError:
                pass  # stream not readable yet: the client starts with whatever arrives first

    async def wait_caught_up(self, cursor: Cursor, timeout_s: float) -> None:
        """Wait (up to timeout_s) until this process has read as far as a resuming client has.

        With several gateway processes a client may come back to one that is a poll behind the
        one it left: resuming there at once would repeat rows. A position that stays ahead of
        the stream after the wait is a recreated topic: `subscribe` then starts at its end.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            behind = [
                name
                for name, wanted in cursor.items()
                if (state := self.streams.get(name)) is not None
                and state.position
                and any(offset > state.position.get(p, offset) for p, offset in wanted.items())
            ]
            if not behind:
                return
            await asyncio.sleep(CATCH_UP_POLL_S)

    def subscribe(
        self, names: list[str], ticker: str | None, cursor: Cursor | None
    ) -> Subscription:
        sub = Subscriber(names, ticker, self.settings.client_queue)
        replay: list[ReplayRange] = []
        snapshot: list[tuple[str, Entry]] = []
        for name in names:
            state = self.streams[name]
            requested = (cursor or {}).get(name)
            sub.live_from[name] = dict(state.position)
            if not state.position:
                sub.positions[name] = {}
            elif requested is None:
                sub.positions[name] = dict(state.position)  # from now on
            else:
                # A position past the end means the topic was recreated: resume at its end.
                sub.positions[name] = {
                    p: min(requested.get(p, state.start[p]), current)
                    for p, current in state.position.items()
                }
                replay_part, snapshot_part = self._resume(name, state, sub)
                replay.extend(replay_part)
                snapshot.extend(snapshot_part)
            state.subscribers.add(sub)
            state.by_ticker.setdefault(ticker, set()).add(sub)
        self.clients += 1
        self.subscribers.add(sub)
        return Subscription(sub, replay, snapshot)

    def _resume(
        self, name: str, state: StreamState, sub: Subscriber
    ) -> tuple[list[ReplayRange], list[tuple[str, Entry]]]:
        buffers = state.buffers_for(sub.ticker)
        replay = []
        first_in_memory = {}
        for partition, wanted in sub.positions[name].items():
            covered = state.coverage(partition, buffers)
            if wanted < covered:
                replay.append(ReplayRange(name, partition, wanted, covered))
            first_in_memory[partition] = max(wanted, covered)
        rows = sorted(
            (
                e
                for b in buffers
                for e in b.rows
                if e.offset >= first_in_memory.get(e.partition, 0) and sub.wants(e.ticker)
            ),
            key=lambda e: e.seq,
        )
        return replay, [(name, e) for e in rows]

    def filter_replayed(self, name: str, entries: list[Entry], sub: Subscriber) -> list[Entry]:
        """Rows read back from Kafka for a resume, less other tickers and at-least-once repeats."""
        state = self.streams[name]
        kept, seen = [], set()
        for entry in entries:
            if not sub.wants(entry.ticker):
                continue
            if entry.event_id is not None:
                first = state.first_seen.get(entry.event_id)
                if first is not None and first != (entry.partition, entry.offset):
                    continue
                if entry.event_id in seen:
                    continue
                seen.add(entry.event_id)
            kept.append(entry)
        return kept

    def unsubscribe(self, sub: Subscriber) -> None:
        removed = False
        for state in self.streams.values():
            if sub in state.subscribers:
                state.subscribers.discard(sub)
                same_filter = state.by_ticker.get(sub.ticker)
                if same_filter is not None:
                    same_filter.discard(sub)
                    if not same_filter:
                        del state.by_ticker[sub.ticker]
                removed = True
        if removed:
            self.clients -= 1
        self.subscribers.discard(sub)

    def stalled(self, timeout_s: float) -> list[Subscriber]:
        """Clients whose current write has waited longer than timeout_s (they stopped reading)."""
        now = time.monotonic()
        return [
            sub
            for sub in self.subscribers
            if sub.sending_since is not None and now - sub.sending_since > timeout_s
        ]

    def close_all(self, reason: str) -> None:
        for sub in list(self.subscribers):
            sub.close(reason)

    def health(self) -> tuple[bool, dict]:
        now = time.monotonic()
        contacts = [s.last_contact for s in self.streams.values() if s.last_contact is not None]
        last = max(contacts) if contacts else None
        reachable = last is not None and now - last < CONTACT_WINDOW_S
        streams = {}
        for name, state in self.streams.items():
            # Ends are refreshed every few seconds, positions at once: rows ingested since the
            # last probe count as caught up, never as negative lag.
            lag = {
                p: max(0, end - state.position.get(p, 0)) for p, end in state.end_offsets.items()
            }
            streams[name] = {
                "topic": state.spec.source_topic,
                "state": state.status,
                "error": state.error,
                "lag": sum(lag.values()),
                "partitions": {
                    str(p): {"position": pos, "lag": lag.get(p)}
                    for p, pos in sorted(state.position.items())
                },
                "backfilled": state.backfilled,
                "rows_in_memory": sum(len(b.rows) for b in state.buffers.values()),
                "tickers": len(state.buffers),
                "records": state.records,
                "duplicates_dropped": state.duplicates,
                "bad_records": state.bad_records,
                "clients": len(state.subscribers),
            }
        body = {
            "status": "ok" if reachable else "unavailable",
            "broker": {
                "bootstrap": self.settings.bootstrap,
                "reachable": reachable,
                "last_contact_s": None if last is None else round(now - last, 3),
            },
            # Each worker process answers for itself (several may share the port).
            "pid": os.getpid(),
            "clients": self.clients,
            "dropped_clients": self.dropped_clients,
            "streams": streams,
        }
        return reachable, body
