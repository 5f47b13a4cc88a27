"""The Server-Sent Events side: event encoding, the per-client generator, the response.

Wire format (one event):  id: <cursor>  event: <stream name>  data: <row JSON>  (gateway.frames)
Besides rows: `ready` first (carries the starting id), `heartbeat` every interval (no id, so the
client's last id stays), `gap` when a resume could not be served in full, `closed` before the
gateway ends a connection on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from gateway.frames import encode_event
from gateway.hub import Hub, ReplayRange, Subscriber, Subscription
from gateway.kafka_io import read_range
from gateway.rows import Entry, format_instant

log = logging.getLogger("gateway.sse")

RETRY_MS = 2000  # how soon a browser reconnects after the stream ends


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def heartbeat() -> bytes:
    return encode_event("heartbeat", _json({"ts": format_instant(datetime.now(UTC))})).encode()


async def resume_chunks(hub: Hub, subscription: Subscription) -> AsyncIterator[bytes]:
    """What a client gets before live rows: `ready`, then the rows it missed (from Kafka, then
    from memory). A resume that fails closes the subscriber with the reason."""
    sub = subscription.subscriber
    ready = {"streams": sub.streams, "ticker": sub.ticker, "heartbeat_s": hub.settings.heartbeat_s}
    yield encode_event("ready", _json(ready), sub.event_id(), RETRY_MS).encode()
    for missing in subscription.replay:
        try:
            chunk = await _read_missing(hub, sub, missing)
        except Exception as exc:  # broker gone mid-resume: the client retries from its id
            log.warning("resume of %s failed: %s", missing, exc)
            sub.close(f"resume failed: {exc}")
            return
        if chunk:
            yield chunk.encode()
    chunk = _encode_rows(sub, subscription.snapshot)
    subscription.snapshot = []
    if chunk:
        yield chunk.encode()
    sub.go_live()


def closed_event(sub: Subscriber) -> bytes:
    return encode_event("closed", _json({"reason": sub.closed_reason})).encode()


async def event_stream(hub: Hub, subscription: Subscription) -> AsyncIterator[bytes]:
    """A client's whole stream as chunks, one per write (SseResponse does the same with writes
    made by the hub; this generator serves tests and readers of the protocol)."""
    sub = subscription.subscriber
    try:
        async for chunk in resume_chunks(hub, subscription):
            yield chunk
        while True:
            if sub.closed_reason is not None:
                yield closed_event(sub)
                return
            if not sub.pending:
                sub.wakeup.clear()
                await sub.wakeup.wait()
                continue
            yield sub.take_chunk()
    finally:
        hub.unsubscribe(sub)


def _encode_rows(sub: Subscriber, rows: list[tuple[str, Entry]]) -> str:
    parts = []
    for stream, entry in rows:
        if sub.advance(stream, entry):
            parts.append(encode_event(stream, entry.data, sub.event_id()))
    return "".join(parts)


async def _read_missing(hub: Hub, sub: Subscriber, missing: ReplayRange) -> str:
    spec = hub.streams[missing.stream].spec
    async with hub.replay_slots:
        entries, begin = await anyio.to_thread.run_sync(
            read_range,
            hub.settings.bootstrap or "",
            spec,
            missing.partition,
            missing.start,
            missing.end,
            hub.settings.replay_max,
        )
    chunk = ""
    if begin > missing.start:
        gap = {
            "stream": missing.stream,
            "partition": missing.partition,
            "from": missing.start,
            "to": begin,
        }
        chunk += encode_event("gap", _json(gap))
        # Those offsets are gone from Kafka (retention) or beyond replay_max: step over them.
        positions = sub.positions.setdefault(missing.stream, {})
        positions[missing.partition] = max(positions.get(missing.partition, 0), begin)
    rows = [(missing.stream, e) for e in hub.filter_replayed(missing.stream, entries, sub)]
    return chunk + _encode_rows(sub, rows)


async def watch_sends(hub: Hub) -> None:
    """Drop the clients whose write has waited longer than the send timeout (they stopped
    reading), and send every client its heartbeat: one task for all clients, run by the lifespan.

    A timer per client (sse-starlette's ping task and its per-send cancel scope) cost more than
    the writes themselves at 1,000 clients; the heartbeat bytes are made once for everybody.
    """
    settings = hub.settings
    timeout_s = settings.send_timeout_s
    tick_s = min(1.0, timeout_s / 4, settings.heartbeat_s)
    next_heartbeat = time.monotonic() + settings.heartbeat_s
    while True:
        await asyncio.sleep(tick_s)
        for sub in hub.stalled(timeout_s):
            if sub.on_stall is not None:
                sub.on_stall()
        if time.monotonic() >= next_heartbeat:
            next_heartbeat += settings.heartbeat_s
            hub.heartbeat(heartbeat())


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]


class SseResponse:
    """The ASGI response of one SSE client, lean enough for thousands of clients per process.

    One task per client (the server's), plus one that waits for the disconnect. While the client
    has nothing pending its task sleeps and `Subscriber.write_now` points at `_write_now`: the hub
    writes each batch of rows straight away, inside the fan-out loop, with no task switch. An
    ASGI `send` of a body completes without suspending unless the socket's buffer is full; when
    it does suspend, the half-done write is handed to this client's task (`_finish_write`),
    which also sends whatever queues up meanwhile, and the watchdog drops the client if that
    write waits longer than the send timeout.
    """

    def __init__(self, hub: Hub, subscription: Subscription) -> None:
        self.hub = hub
        self.subscription = subscription
        self.send: Send | None = None
        self.unfinished: tuple[Coroutine[Any, Any, None], Any] | None = None
        self.stalled = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.subscription.subscriber
        self.send = send
        task = asyncio.current_task()
        assert task is not None
        sub.on_stall = lambda: self._on_stall(task)
        disconnect = asyncio.create_task(self._watch_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            async for chunk in resume_chunks(self.hub, self.subscription):
                await self._send(chunk)
            await self._live(sub)
        except asyncio.CancelledError:
            if not self.stalled:
                raise  # the server is stopping this task
        finally:
            sub.write_now = None
            disconnect.cancel()
            if self.unfinished is not None:
                self.unfinished[0].close()
            self.hub.unsubscribe(sub)

    async def _live(self, sub: Subscriber) -> None:
        pending = sub.pending
        while True:
            if self.unfinished is not None:
                await self._finish_write()
            elif sub.closed_reason is not None:
                await self._end(closed_event(sub))
                return
            elif pending:
                await self._send(sub.take_chunk())
            else:
                sub.wakeup.clear()
                sub.write_now = self._write_now
                try:
                    await sub.wakeup.wait()
                finally:
                    sub.write_now = None

    def _write_now(self, chunk: bytes) -> None:
        """Called by the hub on the loop thread: write a chunk without waiting, if possible."""
        assert self.send is not None
        sub = self.subscription.subscriber
        write = self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        try:
            waiting_on = write.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the connection broke under the write
            sub.close(f"write failed: {exc}")
            return
        # The socket's buffer is full: the client's own task completes this write.
        sub.write_now = None
        sub.sending_since = time.monotonic()
        self.unfinished = (write, waiting_on)
        sub.wakeup.set()

    async def _finish_write(self) -> None:
        assert self.unfinished is not None
        write, waiting_on = self.unfinished
        sub = self.subscription.subscriber
        sub.sending_since = sub.sending_since or time.monotonic()
        try:
            while True:
                if waiting_on is None:  # a bare `yield` (asyncio.sleep(0)) inside send
                    await asyncio.sleep(0)
                else:
                    # What a Task does with a future its coroutine yields: take over the wait.
                    waiting_on._asyncio_future_blocking = False
                    await waiting_on
                try:
                    waiting_on = write.send(None)
                except StopIteration:
                    break
        finally:
            self.unfinished = None
            sub.sending_since = None
            write.close()

    async def _send(self, chunk: bytes) -> None:
        assert self.send is not None
        sub = self.subscription.subscriber
        sub.sending_since = time.monotonic()
        try:
            await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            sub.sending_since = None

    async def _end(self, last_event: bytes) -> None:
        """The `closed` event and the end of the body, if the client takes them in time."""
        assert self.send is not None
        try:
            async with asyncio.timeout(self.hub.settings.send_timeout_s):
                await self.send({"type": "http.response.body", "body": last_event})
        except TimeoutError:
            pass  # a client that stopped reading: the server closes the socket

    async def _watch_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.subscription.subscriber.close("client disconnected")

    def _on_stall(self, task: asyncio.Task) -> None:
        sub = self.subscription.subscriber
        if sub.closed_reason is None:  # one closed as too slow is counted already
            self.hub.dropped_clients += 1
            log.info(
                "dropped an SSE client that stopped reading for %ss",
                self.hub.settings.send_timeout_s,
            )
        sub.close("client stopped reading")
        self.stalled = True
        task.cancel()
