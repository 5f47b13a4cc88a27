"""Many SSE clients in one process (asyncio, raw sockets): fan-out delays, or a log of events.

    python -m benchmarks.sse_clients --port 8000 --path '/api/events?streams=fanout' \
        --clients 1000 --ready-file R --out delays.json            # fanout: publish -> receipt
    python -m benchmarks.sse_clients --port 8000 --path '/api/events?streams=anomalies' \
        --clients 1 --record events.jsonl --ready-file R --out summary.json

A client is a socket speaking just enough HTTP/1.1 (chunked transfer) and SSE. The receipt time
of an event is the wall clock when its bytes were read. In fanout mode a row's delay is that
time minus its `published_ms` field (the publisher's wall clock just before it sent the row).
The process writes the ready file once every client has its `ready` event, and its results on
SIGTERM (or after --duration seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import signal
import sys
import time
from pathlib import Path

PUBLISHED = re.compile(rb'"published_ms":([0-9.]+)')


class Client:
    def __init__(self, index: int, shared: Shared) -> None:
        self.index = index
        self.shared = shared
        self.events = 0
        self.ready = False
        self.closed_reason: str | None = None

    async def run(self, host: str, port: int, path: str) -> None:
        shared = self.shared
        try:
            async with shared.connect_slots:
                reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n".encode()
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                raise RuntimeError(status.decode(errors="replace"))
            chunked = b"chunked" in head.lower()
            raw = b""
            body = b""
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    self.closed_reason = self.closed_reason or "eof"
                    return
                received = time.time()
                if chunked:
                    raw += data
                    decoded, raw = _dechunk(raw)
                    body += decoded
                else:
                    body += data
                end = body.rfind(b"\n\n")
                if end < 0:
                    continue
                complete, body = body[: end + 2], body[end + 2 :]
                self._events(complete, received)
        except Exception as exc:  # counted, reported in the summary
            self.closed_reason = f"{type(exc).__name__}: {exc}"
            shared.errors.append(self.closed_reason)

    def _events(self, block: bytes, received: float) -> None:
        shared = self.shared
        if not self.ready:
            if b"event: ready" in block:
                self.ready = True
                shared.ready += 1
                if shared.ready == shared.expected:
                    shared.all_ready.set()
        if shared.record is not None:
            for event in block.split(b"\n\n"):
                if not event.strip():
                    continue
                name, data = "", []
                for line in event.split(b"\n"):
                    if line.startswith(b"event: "):
                        name = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data.append(line[6:].decode())
                if name in ("ready", "heartbeat"):
                    continue
                self.events += 1
                shared.record.write(
                    json.dumps({"recv": received, "event": name, "data": "\n".join(data)}) + "\n"
                )
            shared.record.flush()
            return
        received_ms = received * 1000
        delays = shared.delays
        for match in PUBLISHED.finditer(block):
            delays.append(received_ms - float(match.group(1)))
            self.events += 1


def _dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """Decode the complete chunks at the front of raw; return (payload, rest)."""
    out = []
    pos = 0
    while True:
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            break
        size = int(raw[pos:line_end].split(b";")[0] or b"0", 16)
        start = line_end + 2
        if len(raw) < start + size + 2:
            break
        out.append(raw[start : start + size])
        pos = start + size + 2
    return b"".join(out), raw[pos:]


class Shared:
    def __init__(self, expected: int, record_path: Path | None) -> None:
        self.expected = expected
        self.ready = 0
        self.all_ready = asyncio.Event()
        self.delays: list[float] = []
        self.errors: list[str] = []
        self.connect_slots = asyncio.Semaphore(64)
        self.record = open(record_path, "a") if record_path else None


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 2)


async def main_async(args: argparse.Namespace) -> dict:
    shared = Shared(args.clients, Path(args.record) if args.record else None)
    clients = [Client(i, shared) for i in range(args.clients)]
    tasks = [asyncio.create_task(c.run(args.host, args.port, args.path)) for c in clients]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    started = time.monotonic()
    try:
        await asyncio.wait_for(shared.all_ready.wait(), args.connect_timeout)
    except TimeoutError:
        pass
    connect_s = time.monotonic() - started
    cpu_ready = time.process_time()
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps({"ready": shared.ready, "wall": time.time()}))
    try:
        await asyncio.wait_for(stop.wait(), args.duration if args.duration > 0 else None)
    except TimeoutError:
        pass
    active_s = time.monotonic() - started - connect_s
    cpu_active = time.process_time() - cpu_ready
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delays = sorted(shared.delays)
    counts = [c.events for c in clients]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "clients": args.clients,
        "ready": shared.ready,
        "connect_s": round(connect_s, 2),
        "events": sum(counts),
        "events_per_client_min": min(counts) if counts else 0,
        "events_per_client_max": max(counts) if counts else 0,
        "closed_early": sum(1 for c in clients if c.closed_reason and c.closed_reason != "eof"),
        "errors": shared.errors[:5],
        "error_count": len(shared.errors),
        "delay_ms": {
            "n": len(delays),
            "p50": _percentile(delays, 50),
            "p95": _percentile(delays, 95),
            "p99": _percentile(delays, 99),
            "max": round(delays[-1], 2) if delays else None,
        },
        "client_cpu_cores": round(cpu_active / active_s, 3) if active_s > 0 else None,
        "client_max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sse_clients")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0, help="0 = until SIGTERM")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--ready-file")
    parser.add_argument("--record", help="append every row event to this JSONL")
    parser.add_argument("--out", required=True, help="summary JSON")
    args = parser.parse_args(argv)
    summary = asyncio.run(main_async(args))
    Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
