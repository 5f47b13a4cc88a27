"""python -m runner [run|check|replay|reload] — see `python -m runner --help`."""

from __future__ import annotations

import sys

from runner.cli import main

sys.exit(main())
