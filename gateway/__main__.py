"""python -m gateway --host 127.0.0.1 --port 8000 --bootstrap 127.0.0.1:9092 --catalog PATH"""

from __future__ import annotations

import logging
import sys

import uvicorn

from gateway.app import create_app
from gateway.settings import parse_args


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs every reconnect attempt at WARNING/ERROR; the gateway reports them itself.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    app = create_app(settings)
    print(
        f"gateway: http://{settings.host}:{settings.port}/ (bootstrap {settings.bootstrap}, catalog {settings.catalog})",
        flush=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
