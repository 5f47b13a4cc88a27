"""The gateway's fan-out write path, driven through its ASGI response with a socket-like `send`:
an idle client gets each batch written by the hub at once; a write that has to wait for the
socket is finished by the client's own task, in order, with what queued meanwhile."""

from __future__ import annotations

import asyncio
import json

from gateway.hub import Hub
from gateway.settings import Settings
from gateway.sse import SseResponse
from tests.test_gateway_units import CANDLES, SPEC, row


class Socket:
    """An ASGI send like uvicorn's: a body write waits while the socket's buffer is full."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.ended = False

    async def send(self, message: dict) -> None:
        if not self.writable.is_set():
            await self.writable.wait()
        if message["type"] == "http.response.body":
            self.bodies.append(message["body"])
            self.ended = not message.get("more_body", False)

    def seqs(self) -> list[int]:
        text = b"".join(self.bodies).decode()
        return [
            json.loads(line[6:])["seq"]
            for line in text.split("\n")
            if line.startswith('data: {"ticker')
        ]


async def never_disconnect() -> dict:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def test_sse_response_when_client_idle_then_hub_writes_at_once_and_a_blocked_write_finishes_in_order() -> (
    None
):
    async def main() -> None:
        hub = Hub(Settings(bootstrap=None, client_queue=100), {"candles": CANDLES})
        hub.on_assigned("candles", {0: 0}, {0: 0})
        subscription = hub.subscribe(["candles"], None, None)
        sub = subscription.subscriber
        socket = Socket()
        task = asyncio.create_task(
            SseResponse(hub, subscription)({}, never_disconnect, socket.send)
        )
        for _ in range(100):
            if sub.write_now is not None:
                break
            await asyncio.sleep(0.01)
        assert sub.write_now is not None, "the client never went idle"
        written = len(socket.bodies)

        hub.ingest("candles", [row("SBER", 0, 0, CANDLES)], {0: 1})
        assert len(socket.bodies) == written + 1  # written inside ingest: no task switch
        assert socket.seqs() == [0]

        socket.writable.clear()  # the client stops reading: the next write waits
        hub.ingest("candles", [row("SBER", 1, 0, CANDLES)], {0: 2})
        hub.ingest("candles", [row("GAZP", 2, 0, CANDLES)], {0: 3})
        assert socket.seqs() == [0] and sub.write_now is None and sub.sending_since is not None
        assert len(sub.pending) == 1  # row 2 waits behind the unfinished write of row 1

        socket.writable.set()
        for _ in range(100):
            if socket.seqs() == [0, 1, 2] and sub.write_now is not None:
                break
            await asyncio.sleep(0.01)
        assert socket.seqs() == [0, 1, 2] and sub.sending_since is None

        hub.ingest("candles", [row("SBER", 3, 0, CANDLES)], {0: 4})
        assert socket.seqs() == [0, 1, 2, 3]  # idle again: written at once

        sub.close("test over")
        await asyncio.wait_for(task, 5)
        assert socket.ended and b"event: closed" in socket.bodies[-1]
        assert hub.clients == 0

    asyncio.run(main())


def test_sse_response_when_idle_client_on_two_streams_gets_a_big_batch_then_all_of_it_at_once() -> (
    None
):
    async def main() -> None:
        hub = Hub(
            Settings(bootstrap=None, client_queue=1000),
            {"candles": CANDLES, "signals": SPEC},
        )
        hub.on_assigned("candles", {0: 0}, {0: 0})
        hub.on_assigned("signals", {0: 0}, {0: 0})
        subscription = hub.subscribe(["candles", "signals"], None, None)
        sub = subscription.subscriber
        socket = Socket()
        task = asyncio.create_task(
            SseResponse(hub, subscription)({}, never_disconnect, socket.send)
        )
        for _ in range(100):
            if sub.write_now is not None:
                break
            await asyncio.sleep(0.01)
        assert sub.write_now is not None
        hub.ingest("candles", [row("SBER", o, 0, CANDLES) for o in range(700)], {0: 700})
        assert socket.seqs() == list(range(700)) and not sub.pending
        sub.close("test over")
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
