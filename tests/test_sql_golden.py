"""Every sql/ output against its golden cases: small inputs -> expected rows, through replay.

A case is a folder tests/golden/<output>/<case>/ with the inputs it needs (trades.jsonl,
orderbook.jsonl, market_status.jsonl: topic payloads, one per line) and expected.jsonl, written
by tests/golden/make_golden.py from the reference semantics in tests/golden/oracle.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moex.paths import SQL_DIR
from runner import replay
from runner.settings import Settings
from runner.sqlfiles import discover, grain_columns, load
from tests.golden.compare import differences, load_jsonl

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.parent for p in GOLDEN.glob("*/*/expected.jsonl"))


def sql_outputs() -> dict[str, Path]:
    return {path.stem: path for path in discover(SQL_DIR) if load(path).is_output}


def test_sql_dir_when_walked_then_every_output_has_a_golden_case() -> None:
    outputs = sql_outputs()
    assert outputs, "no output files found under sql/"
    missing = [name for name in outputs if not list((GOLDEN / name).glob("*/expected.jsonl"))]
    assert not missing, f"outputs without a golden case in tests/golden/<output>/<case>/: {missing}"
    orphans = sorted({case.parent.name for case in CASES} - outputs.keys())
    assert not orphans, f"golden cases for outputs that no longer exist: {orphans}"


@pytest.mark.flink
@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_output_when_golden_input_replayed_then_rows_match_expected(
    case: Path, tmp_path: Path
) -> None:
    output = case.parent.name
    inputs = {
        name: case / f"{name}.jsonl" if (case / f"{name}.jsonl").exists() else None
        for name in ("trades", "orderbook", "market_status")
    }
    settings = Settings()
    settings.only = [output]
    result = replay.run(
        settings, inputs["trades"], tmp_path, inputs["orderbook"], inputs["market_status"]
    )

    grain = grain_columns(load(sql_outputs()[output]))
    actual = load_jsonl(result.out_dir / f"{output}.jsonl")
    problems = differences(load_jsonl(case / "expected.jsonl"), actual, grain)
    assert not problems, "\n".join(problems[:20])
