"""Command-line options generated from TrainConfig's field metadata, so that every default is written once."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import Field, fields
from typing import Annotated, Any

import typer
from typer.models import ParameterInfo

from graftcv.choices import REGISTRIES
from graftcv.config import PANELS, TrainConfig

FIELDS: dict[str, Field] = {item.name: item for item in fields(TrainConfig)}
HINTS: dict[str, Any] = typing.get_type_hints(TrainConfig)


def flag(name: str) -> str:
    """The option's flag: `--field-name` unless the field names another (num_workers: --workers)."""
    return FIELDS[name].metadata.get("flag") or f"--{name.replace('_', '-')}"


def choices_text(name: str) -> str:
    """'a | b | c': the registered names of a registry-backed setting, or the field's fixed choices."""
    if name in REGISTRIES:
        return REGISTRIES[name].choices_help()
    return " | ".join(FIELDS[name].metadata.get("choices", ()))


def option_help(name: str) -> str:
    text, choices = FIELDS[name].metadata["help"], choices_text(name)
    return f"{text}: {choices}" if choices else text


def cli_type(name: str) -> type:
    """What the option parses: the field's type without None, or str for a field of several types (lr is a
    number or 'auto', devices 'auto' or a count): TrainConfig.validate converts those."""
    hint = HINTS[name]
    types = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return types[0] if len(types) == 1 else str


def shown_default(name: str) -> str | bool:
    """The TrainConfig default as the help shows it; nothing for None (the help says whose default applies)."""
    default = FIELDS[name].default
    if default is None:
        return False
    if cli_type(name) is bool:
        return flag(name)[2:] if default else f"no-{flag(name)[2:]}"
    return str(default)


def config_option(name: str, help: str | None = None, panel: bool = True) -> Any:
    """`Annotated[T | None, typer.Option(...)]` for a TrainConfig field; give it the default None, so that an
    option the user did not pass reaches `fit` as nothing and the strategy's own default can apply."""
    kind = cli_type(name)
    declaration = f"{flag(name)}/--no-{flag(name)[2:]}" if kind is bool else flag(name)
    option = typer.Option(
        declaration,
        help=help or option_help(name),
        rich_help_panel=FIELDS[name].metadata["panel"] if panel else None,
        show_default=shown_default(name),
    )
    return Annotated[kind | None, option]


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The options the user passed: typer gives None for the others."""
    return {key: value for key, value in values.items() if value is not None}


def parsed(settings: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig settings as `validate` reads them (--devices 2 is the count 2, --lr 1e-3 a number): a resumed
    run compares the given ones with those it recorded."""
    config = TrainConfig(**settings).validate()
    return {name: getattr(config, name) for name in settings}


def _panel_rank(parameter: inspect.Parameter) -> int:
    """Options in PANELS order; those in no panel (the command's own, such as --out) first."""
    infos = [m for m in getattr(parameter.annotation, "__metadata__", ()) if isinstance(m, ParameterInfo)]
    panel = infos[0].rich_help_panel if infos else None
    return PANELS.index(panel) if panel in PANELS else -1


def with_config_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command(own parameters..., **settings)` one option per CLI field of TrainConfig.

    typer reads the parameters from `inspect.signature`, which honours `__signature__`: the generated options
    join the command's own ones there, and typer passes every one of them as a keyword argument."""
    own = inspect.signature(command, eval_str=True)
    keyword = inspect.Parameter.KEYWORD_ONLY  # no order constraints between defaults and non-defaults
    generated = [
        inspect.Parameter(item.name, keyword, default=None, annotation=config_option(item.name))
        for item in fields(TrainConfig)
        if item.metadata["cli"]
    ]
    kept = [p.replace(kind=keyword) for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    # a stable sort: within a panel the generated options come first, then the command's own (--resume)
    parameters = sorted([*generated, *kept], key=_panel_rank)
    command.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    return command
