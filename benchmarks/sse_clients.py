"""Many SSE clients at little CPU cost: fan-out delays, or a log of events.

    python -m benchmarks.sse_clients --port 8000 --path '/api/events?streams=fanout' \
        --clients 1000 --ready-file R --out delays.json            # fanout: publish -> receipt
    python -m benchmarks.sse_clients --port 8000 --path '/api/events?streams=fanout' \
        --clients 10000 --processes 2 --ready-file R --out delays.json
    python -m benchmarks.sse_clients --port 8000 --path '/api/events?streams=anomalies' \
        --clients 1 --record events.jsonl --ready-file R --out summary.json

The load generator must cost far less than the gateway it measures, so a client is an asyncio
Protocol (on uvloop when installed) speaking just enough HTTP/1.1: no task per client, no
de-chunking, no SSE parsing in fanout mode. Events end with a blank line, which the chunked framing
(`\\r\\n`) never contains, so each read is cut at its last `\\n\\n`; the complete part is searched
for `"published_ms":<number>` (one per row) and `event: ready`, the rest waits for the next read.
The receipt time of an event is the wall clock when its bytes were read; a row's delay is that
time minus its `published_ms` (the publisher's wall clock just before it sent the row).

--processes K splits the clients over K processes (this one supervises): at 10,000 clients one
process would queue the reads behind each other. The ready file is written once every client has
its `ready` event; the summary on SIGTERM (or after --duration seconds). --record keeps the full
parse (every event with its name and data, to a JSONL) for the live benchmark's single client.

Over 300 lines: one standalone program (it runs in its own process, often in the bench venv).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

PUBLISHED = re.compile(rb'"published_ms":([0-9.]+)')
READY = b"event: ready"


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard one (10,000 clients need 10,000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Shared:
    def __init__(self, expected: int, record_path: Path | None) -> None:
        self.expected = expected
        self.ready = 0
        self.all_ready = asyncio.Event()
        self.delays = array("d")
        self.errors: list[str] = []
        self.record = open(record_path, "a") if record_path else None


class Client(asyncio.Protocol):
    """One SSE connection; counts events, keeps each row's delay."""

    def __init__(self, shared: Shared, request: bytes) -> None:
        self.shared = shared
        self.request = request
        self.events = 0
        self.ready = False
        self.head_done = False
        self.tail = b""
        self.closed_reason: str | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # uvloop: not a Transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed_reason is None:
            self.closed_reason = "eof" if exc is None else f"{type(exc).__name__}: {exc}"
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        buffer = self.tail + data if self.tail else data
        if not self.head_done:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                self.tail = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 200 " not in status:
                self._fail(status.decode(errors="replace"))
                return
            self.head_done = True
            buffer = buffer[head_end + 4 :]
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self.tail = buffer
            return
        block, self.tail = buffer[: end + 2], buffer[end + 2 :]
        shared = self.shared
        if not self.ready and READY in block:
            self.ready = True
            shared.ready += 1
            if shared.ready == shared.expected:
                shared.all_ready.set()
        if shared.record is not None:
            self._record(block, received)
            return
        received_ms = received * 1000
        delays = shared.delays
        for match in PUBLISHED.finditer(block):
            delays.append(received_ms - float(match.group(1)))
            self.events += 1

    def _fail(self, reason: str) -> None:
        self.closed_reason = reason
        self.shared.errors.append(reason)
        if not self.done.done():
            self.done.set_result(None)

    def _record(self, block: bytes, received: float) -> None:
        """The full parse: chunk framing removed, each event's name and data kept."""
        record = self.shared.record
        assert record is not None
        for event in _dechunked_events(block):
            name, data = "", []
            for line in event.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data.append(line[6:].decode())
            if name in ("", "ready", "heartbeat"):
                continue
            self.events += 1
            record.write(
                json.dumps({"recv": received, "event": name, "data": "\n".join(data)}) + "\n"
            )
        record.flush()


_CHUNK_LINE = re.compile(rb"(?:^|\r\n)[0-9a-fA-F]+\r\n")


def _dechunked_events(block: bytes) -> list[bytes]:
    """Events of a block of chunked body made of whole events (chunk size lines dropped)."""
    text = _CHUNK_LINE.sub(b"", block)
    return [e.strip(b"\r\n") for e in text.split(b"\n\n") if e.strip(b"\r\n")]


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 2)


def summarise(
    delays: list[float],
    counts: list[int],
    ready: int,
    connect_s: float,
    errors: list[str],
    closed_early: int,
    cpu_s: float,
    active_s: float,
    max_rss_mb: float,
) -> dict:
    delays.sort()
    return {
        "clients": len(counts),
        "ready": ready,
        "connect_s": round(connect_s, 2),
        "events": sum(counts),
        "events_per_client_min": min(counts) if counts else 0,
        "events_per_client_max": max(counts) if counts else 0,
        "closed_early": closed_early,
        "errors": errors[:5],
        "error_count": len(errors),
        "delay_ms": {
            "n": len(delays),
            "p50": _percentile(delays, 50),
            "p95": _percentile(delays, 95),
            "p99": _percentile(delays, 99),
            "max": round(delays[-1], 2) if delays else None,
        },
        "client_cpu_cores": round(cpu_s / active_s, 3) if active_s > 0 else None,
        "client_max_rss_mb": round(max_rss_mb, 1),
    }


async def main_async(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    shared = Shared(args.clients, Path(args.record) if args.record else None)
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    clients: list[Client] = []
    connect_slots = asyncio.Semaphore(64)

    async def connect() -> None:
        async with connect_slots:
            try:
                _, client = await loop.create_connection(
                    lambda: Client(shared, request), args.host, args.port
                )
                clients.append(client)
            except OSError as exc:
                shared.errors.append(f"connect: {exc}")

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    started = time.monotonic()
    connecting = asyncio.gather(*(connect() for _ in range(args.clients)))
    try:
        await asyncio.wait_for(shared.all_ready.wait(), args.connect_timeout)
    except TimeoutError:
        pass
    await connecting
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
    closed_early = sum(1 for c in clients if c.closed_reason not in (None, "eof"))
    if args.delays_out:  # a supervisor merges the raw delays of its processes
        with open(args.delays_out, "wb") as out:
            shared.delays.tofile(out)
    return summarise(
        [] if args.delays_out else list(shared.delays),
        [c.events for c in clients] + [0] * (args.clients - len(clients)),
        shared.ready,
        connect_s,
        shared.errors,
        closed_early,
        cpu_active,
        active_s,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def supervise(args: argparse.Namespace, argv: list[str]) -> dict:
    """Run the clients in args.processes children; merge their ready files and summaries."""
    work = Path(tempfile.mkdtemp(prefix="moex-sse-clients-"))
    shares = [
        args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
        for i in range(args.processes)
    ]
    base = _without(argv, ("--clients", "--processes", "--ready-file", "--out", "--delays-out"))
    children = []
    for index, count in enumerate(shares):
        command = [
            sys.executable, "-m", "benchmarks.sse_clients", *base, "--clients", str(count),
            "--ready-file", str(work / f"ready-{index}"), "--out", str(work / f"out-{index}"),
            "--delays-out", str(work / f"delays-{index}"),
        ]  # fmt: skip
        children.append(subprocess.Popen(command))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        ready_files = [work / f"ready-{i}" for i in range(len(children))]
        while not all(f.exists() for f in ready_files) and not stop:
            if any(c.poll() is not None for c in children):
                break
            time.sleep(0.1)
        ready = sum(json.loads(f.read_text())["ready"] for f in ready_files if f.exists())
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps({"ready": ready, "wall": time.time()}))
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while not stop and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(60)
        parts = [json.loads((work / f"out-{i}").read_text()) for i in range(len(children))]
        delays = array("d")
        for index in range(len(children)):
            with open(work / f"delays-{index}", "rb") as raw:
                delays.frombytes(raw.read())
        counts = [p["events_per_client_min"] for p in parts] + [
            p["events_per_client_max"] for p in parts
        ]
        summary = summarise(
            list(delays),
            [],
            ready,
            max(p["connect_s"] for p in parts),
            [e for p in parts for e in p["errors"]],
            sum(p["closed_early"] for p in parts),
            0.0,
            0.0,
            sum(p["client_max_rss_mb"] for p in parts),
        )
        summary.update(
            clients=args.clients,
            events=sum(p["events"] for p in parts),
            events_per_client_min=min(counts),
            events_per_client_max=max(counts),
            error_count=sum(p["error_count"] for p in parts),
            client_cpu_cores=round(sum(p["client_cpu_cores"] or 0 for p in parts), 3),
            processes=len(children),
        )
        return summary
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for path in work.iterdir():
            path.unlink()
        work.rmdir()


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in options:
            skip = "=" not in item
            continue
        kept.append(item)
    return kept


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sse_clients")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--duration", type=float, default=0.0, help="0 = until SIGTERM")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--ready-file")
    parser.add_argument("--record", help="append every row event to this JSONL")
    parser.add_argument("--out", required=True, help="summary JSON")
    parser.add_argument("--delays-out", help=argparse.SUPPRESS)  # raw delays, for a supervisor
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.processes > 1 and not args.record:
        summary = supervise(args, argv)
    else:
        try:
            from uvloop import run
        except ImportError:
            run = asyncio.run
        summary = run(main_async(args))
    Path(args.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
