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
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from gateway.frames import encode_event
from gateway.hub import Hub, ReplayRange, Subscriber, Subscription
from gateway.kafka_io import read_range
from gateway.rows import Entry, format_instant

log = logging.getLogger("gateway.sse")

RETRY_MS = 2000  # how soon a browser reconnects after the stream ends
MAX_EVENTS_PER_CHUNK = 500


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def heartbeat() -> ServerSentEvent:
    now = format_instant(datetime.now(UTC))
    return ServerSentEvent(data=_json({"ts": now}), event="heartbeat", sep="\n")


async def event_stream(
    hub: Hub, subscription: Subscription, streams: list[str]
) -> AsyncIterator[bytes]:
    # bytes: sse-starlette would wrap a str in another `data:` field
    sub = subscription.subscriber
    try:
        ready = {"streams": streams, "ticker": sub.ticker, "heartbeat_s": hub.settings.heartbeat_s}
        yield encode_event("ready", _json(ready), sub.event_id(), RETRY_MS).encode()
        for missing in subscription.replay:
            try:
                chunk = await _read_missing(hub, sub, missing)
            except Exception as exc:  # broker gone mid-resume: the client retries from its id
                log.warning("resume of %s failed: %s", missing, exc)
                yield encode_event("closed", _json({"reason": f"resume failed: {exc}"})).encode()
                return
            if chunk:
                yield chunk.encode()
        chunk = _encode_rows(sub, subscription.snapshot)
        subscription.snapshot = []
        if chunk:
            yield chunk.encode()
        sub.go_live()
        pending = sub.pending
        while True:
            if sub.closed_reason is not None:
                yield encode_event("closed", _json({"reason": sub.closed_reason})).encode()
                return
            if not pending:
                sub.wakeup.clear()
                await sub.wakeup.wait()
                continue
            if len(pending) == 1:
                yield sub.frame_bytes(pending.popleft())
            else:  # everything waiting goes out in one write
                count = min(len(pending), MAX_EVENTS_PER_CHUNK)
                yield b"".join([sub.frame_bytes(pending.popleft()) for _ in range(count)])
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
    """Drop the clients whose write has waited longer than the send timeout (they stopped reading).

    sse-starlette bounds every send with its own cancel scope and timer; at 1,000 clients that
    cost more than the write itself, so GatewayEventSource only stamps when a write began and this
    one task, run by the lifespan, looks for stamps that are too old.
    """
    timeout_s = hub.settings.send_timeout_s
    while True:
        await asyncio.sleep(min(1.0, timeout_s / 4))
        for sub in hub.stalled(timeout_s):
            if sub.on_stall is not None:
                sub.on_stall()


class GatewayEventSource(EventSourceResponse):
    """An EventSourceResponse tied to its subscriber.

    - On server shutdown the subscriber is closed, so the stream ends with a `closed` event and
      a complete chunked body (the browser reconnects to the next gateway and resumes).
    - Once the subscriber is closed (too slow, shutting down), the response gets the send timeout
      to finish: a client that stopped reading never drains the last bytes, and the deadline
      then ends the response and uvicorn closes the socket.
    - A write that waits longer than the send timeout ends the response too (see watch_sends).
    """

    SHUTDOWN_GRACE_S = 1.0

    def __init__(self, subscription: Subscription, content: AsyncIterator[bytes], hub: Hub) -> None:
        settings = hub.settings
        self.subscription = subscription
        self.hub = hub
        self.shutdown = anyio.Event()
        super().__init__(
            content,
            ping=settings.heartbeat_s,
            ping_message_factory=heartbeat,
            sep="\n",
            headers={"Cache-Control": "no-store"},
            # Runs beside the stream in the response's own task group, cancelled with it.
            data_sender_callable=self._close_on_shutdown,
            shutdown_event=self.shutdown,
            shutdown_grace_period=self.SHUTDOWN_GRACE_S,
        )

    async def _close_on_shutdown(self) -> None:
        await self.shutdown.wait()
        self.subscription.subscriber.close("gateway shutting down")

    async def _send_with_timeout(self, send: Send, message: dict) -> None:  # type: ignore[override]
        # Overrides sse-starlette 3.7.0 (pinned): the timeout is enforced by watch_sends.
        sub = self.subscription.subscriber
        sub.sending_since = time.monotonic()
        try:
            await send(message)
        finally:
            sub.sending_since = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.subscription.subscriber
        try:
            with anyio.CancelScope() as deadline_scope:

                def on_close() -> None:
                    deadline_scope.deadline = (
                        anyio.current_time() + self.hub.settings.send_timeout_s
                    )

                def on_stall() -> None:
                    if sub.closed_reason is None:  # one closed as too slow is counted already
                        self.hub.dropped_clients += 1
                        log.info(
                            "dropped an SSE client that stopped reading for %ss",
                            self.hub.settings.send_timeout_s,
                        )
                    sub.close("client stopped reading")
                    deadline_scope.cancel()

                sub.on_close = on_close
                sub.on_stall = on_stall
                if sub.closed_reason is not None:
                    on_close()
                await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(sub)
