"""The separate venv of the peer benchmarks: Quix Streams and the fast load generator."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.harness import PY, say
from moex.paths import CACHE

BENCH_VENV = CACHE / "bench-venv"
QUIX_PIN = "quixstreams==3.28.1"


def bench_python(create: bool = True) -> Path | None:
    """Python of .cache/bench-venv (Quix Streams + confluent-kafka), created with pip on first use.

    Kept apart from .venv: quixstreams pins its own confluent-kafka and rocksdict."""
    python = BENCH_VENV / "bin" / "python"
    marker = BENCH_VENV / f".installed-{QUIX_PIN}"
    if marker.exists():
        return python
    if python.exists():  # made by hand or by an interrupted run: reuse it when complete
        check = subprocess.run(
            [
                str(python),
                "-c",
                "import quixstreams, confluent_kafka; print(quixstreams.__version__)",
            ],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0 and check.stdout.strip() == QUIX_PIN.split("==")[1]:
            marker.write_text(QUIX_PIN + "\n")
            return python
    if not create:
        return None
    say(f"creating {BENCH_VENV} with {QUIX_PIN} (pip, once)")
    try:
        subprocess.run([PY, "-m", "venv", "--clear", str(BENCH_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", QUIX_PIN],
            check=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        say(f"bench venv not available: {exc}")
        return None
    marker.write_text(QUIX_PIN + "\n")
    return python
