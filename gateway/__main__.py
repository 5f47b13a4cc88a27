"""python -m gateway --host 127.0.0.1 --port 8000 --bootstrap 127.0.0.1:9092 --catalog PATH

With --workers N (N > 1) this process supervises N gateway processes that share the port through
SO_REUSEPORT: the kernel spreads new connections over them, each reads every topic on its own
(no consumer group) and serves its clients from its own memory. Event ids are Kafka positions,
so a client that reconnects to another worker resumes there without a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

import uvicorn

from gateway.app import create_app
from gateway.hub import Hub
from gateway.settings import Settings, parse_args

RESTART_BACKOFF_S = 1.0


def tune_gc() -> None:
    """Keep full garbage collections from stalling every client's stream.

    Each SSE client holds GC-tracked objects; at 1,000 clients a full collection stopped the
    event loop for ~0.2 s, and with the default thresholds one ran every ~8 s under fan-out load
    (each stall delayed ~4 rows for every client). What exists at startup never becomes garbage,
    so it is frozen out of every scan, and full collections run 10 times less often; young
    collections are unchanged, so short-lived garbage is freed as before.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 100)  # default (700, 10, 10)


def raise_fd_limit() -> None:
    """One socket per client: lift the soft open-files limit (often 1,024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class GatewayServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM/SIGINT also ends every SSE stream with `closed`.

    uvicorn waits for open responses before it stops, and an SSE response never ends by itself:
    closing the subscribers lets each send its `closed` event and a complete body, so browsers
    reconnect (to another worker or the restarted gateway) at once and resume from their id.
    """

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.hub.close_all, "gateway shutting down")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(False)
    return sock


def serve(settings: Settings) -> int:
    """One gateway process (a worker, or the whole gateway with --workers 1)."""
    app = create_app(settings)
    tune_gc()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=3,
        backlog=4096,  # connection bursts: thousands of clients reconnect after a restart
    )
    server = GatewayServer(config, app.state.hub)
    sockets = [reuse_port_socket(settings.host, settings.port)] if settings.reuse_port else None
    server.run(sockets=sockets)
    return 0 if server.started else 1


def supervise(settings: Settings, argv: list[str]) -> int:
    """Start settings.workers gateway processes on the shared port; restart one that dies."""
    command = [sys.executable, "-m", "gateway", *argv, "--workers", "1", "--reuse-port"]
    workers: list[subprocess.Popen] = [subprocess.Popen(command) for _ in range(settings.workers)]
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            for index, worker in enumerate(workers):
                if worker.poll() is not None and not stopping:
                    print(
                        f"gateway: worker {worker.pid} exited ({worker.returncode}); restarting",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(RESTART_BACKOFF_S)
                    workers[index] = subprocess.Popen(command)
            time.sleep(0.2)
        deadline = time.monotonic() + 15
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs every reconnect attempt at WARNING/ERROR; the gateway reports them itself.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    raise_fd_limit()
    where = f"http://{settings.host}:{settings.port}/"
    if settings.workers > 1:
        print(
            f"gateway: {where} ({settings.workers} worker processes, bootstrap "
            f"{settings.bootstrap}, catalog {settings.catalog})",
            flush=True,
        )
        return supervise(settings, argv)
    print(
        f"gateway: {where} (bootstrap {settings.bootstrap}, catalog {settings.catalog})",
        flush=True,
    )
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
