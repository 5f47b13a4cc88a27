"""The `moex` command dispatches to each stage's own command line."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.settings import parse_args as parse_gateway_args
from moex import settings_doc
from moex.cli import COMMANDS, main
from moex.settings import add_flags, env_name, given
from runner.settings import Settings as RunnerSettings

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


def test_operations_doc_when_settings_models_change_then_its_tables_follow() -> None:
    """docs/operations.md's Configuration tables are the settings models, field by field."""
    assert settings_doc.documented() == settings_doc.markdown(), (
        "docs/operations.md is stale: run `python -m moex settings --write`"
    )
    for model in settings_doc.MODELS.values():
        for name, field in model.model_fields.items():
            if field.description:
                assert f"`{env_name(model, name)}`" in settings_doc.markdown()


def test_runner_settings_when_env_and_flag_given_then_flag_wins_over_env_over_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, RunnerSettings, ("checkpoint_interval_ms", "only", "rest_port"))
    monkeypatch.setenv("MOEX_CHECKPOINT_MS", "7000")
    monkeypatch.setenv("FLINK_REST_PORT", "18081")
    monkeypatch.delenv("MOEX_ONLY", raising=False)
    args = parser.parse_args(["--checkpoint-ms", "250", "--only", "candles_1m, signals"])
    settings = RunnerSettings(**given(args, RunnerSettings))
    assert settings.checkpoint_interval_ms == 250  # the flag
    assert settings.rest_port == 18081  # the environment
    assert settings.only == ["candles_1m", "signals"]
    assert settings.watermark_delay_ms == RunnerSettings().watermark_delay_ms  # the default


def test_gateway_settings_when_a_flag_is_out_of_range_then_exit_2_naming_it(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_gateway_args(["--send-timeout", "0"])
    assert raised.value.code == 2
    assert "--send-timeout" in capsys.readouterr().err
    assert parse_gateway_args(["--workers", "3"]).reuse_port  # workers share the port


def test_makefile_when_read_then_every_target_runs_a_moex_command() -> None:
    """The targets call `moex <command>` (as `python -m moex`), not the stages' modules."""
    makefile = (ROOT / "Makefile").read_text()
    called = re.findall(r"\$\(MOEX\) ([a-z-]+)", makefile)
    assert {"up", "down", "status", "reload", "check", "bench", "cluster", "sql"} <= set(called)
    assert set(called) <= set(COMMANDS), set(called) - set(COMMANDS)
    # Only pytest is run as a module; every program of the platform goes through `moex`.
    assert re.findall(r"\$\(PY\) -m (\S+)", makefile) == ["moex", "pytest", "pytest"]
    assert ".venv/bin/pip install -q -e . --no-deps" in makefile
