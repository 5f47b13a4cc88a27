"""The `moex` command dispatches to each stage's own command line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from moex.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


def test_moex_when_run_without_command_then_lists_every_subcommand(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out


def test_moex_when_command_unknown_then_exit_2_with_usage(capsys) -> None:
    assert main(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_moex_subcommand_when_help_asked_then_the_stage_answers(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "moex", name, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_pyproject_when_read_then_moex_script_and_pins_come_from_requirements() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["moex"] == "moex.cli:main"
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
