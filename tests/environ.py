"""The environment for processes a test starts."""

from __future__ import annotations

import os

# PyFlink sets this in a process that has run a Python UDF in loopback mode (an in-process
# replay); a child inheriting it refuses to start its own Java gateway.
INHERITED_BY_ACCIDENT = ("PYFLINK_GATEWAY_DISABLED",)


def clean_environ() -> dict[str, str]:
    """os.environ without what a test process picked up from PyFlink."""
    return {k: v for k, v in os.environ.items() if k not in INHERITED_BY_ACCIDENT}
