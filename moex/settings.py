"""Typed settings, defined once: each option is a field of a pydantic-settings model with its
environment variable, default and help text. A program reads its model once at start-up
(`Model(**flags)`): a flag given on the command line overrides the environment, which overrides
the default. The flags themselves and the table in docs/operations.md are made from the same
fields (`python -m moex settings --markdown`), so the three cannot drift apart.

A field's flag is `--<field-name>` unless its `json_schema_extra` names another (`flag`), or
`flag: None` for an option read from the environment only (a secret would show in `ps`).
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from moex.paths import ROOT, RUN


def env_name(model: type[BaseSettings], name: str) -> str:
    """The environment variable of a field: its alias, or the model's prefix + its name."""
    field = model.model_fields[name]
    if isinstance(field.validation_alias, str):
        return field.validation_alias
    return f"{model.model_config.get('env_prefix', '')}{name}".upper()


def flag_of(field: FieldInfo, name: str) -> str | None:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "flag" in extra:
        return typing.cast(str | None, extra["flag"])
    return "--" + name.replace("_", "-")


def _scalar(annotation: Any) -> Any:
    """int for `int`, str for `str | None`, Path for `Path`: what argparse converts a flag to."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation if annotation in (int, float, Path, bool) else str


def add_flags(
    parser: argparse.ArgumentParser, model: type[BaseSettings], names: Iterable[str]
) -> None:
    """One flag per named field. Its default is left out (None) so that only a flag given on
    the command line overrides the environment; the help shows the variable and the default."""
    for name in names:
        field = model.model_fields[name]
        flag = flag_of(field, name)
        if flag is None:
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        # A field whose validator reads words too ("auto") takes its flag as text.
        kind = str if extra.get("flag_text") else _scalar(field.annotation)
        help_text = f"{field.description or ''} (env {env_name(model, name)}; default {shown_default(field)})"
        if not field.description:
            help_text = argparse.SUPPRESS  # internal: set by code, not by users
        if kind is bool:
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
        else:
            metavar = flag.lstrip("-").replace("-", "_").upper()
            parser.add_argument(
                flag, dest=name, type=kind, default=None, metavar=metavar, help=help_text
            )


def given(args: argparse.Namespace, model: type[BaseSettings]) -> dict[str, Any]:
    """The flags the command line gave, by field name, to override the model's other sources."""
    return {
        name: value
        for name, value in vars(args).items()
        if name in model.model_fields and value is not None
    }


def shown_default(field: FieldInfo) -> str:
    """The default as a reader sees it: paths relative to the repository or to `.run/`."""
    value = field.get_default(call_default_factory=True)
    if isinstance(value, Path):
        if value.is_relative_to(RUN):
            return str(Path(".run") / value.relative_to(RUN))
        if value.is_relative_to(ROOT):
            return str(value.relative_to(ROOT)) + "/"
    if value is None or value == [] or value == ():
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    return str(value)


def markdown_table(model: type[BaseSettings]) -> str:
    """| Variable | Flag | Default | Meaning | of every documented field of a model.

    Fields without a description are internal (set by code or tests) and left out.
    """
    lines = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if not field.description:
            continue
        flag = flag_of(field, name)
        lines.append(
            f"| `{env_name(model, name)}` | {f'`{flag}`' if flag else '-'} | "
            f"{shown_default(field)} | {field.description} |"
        )
    return "\n".join(lines)
