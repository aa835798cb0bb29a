"""Click options made from settings declarations, so a flag, its variable and its help agree.

``@settings_options(WorkerSettings)`` adds one option per declared setting: the flag, the
variable named in ``--help``, the help and the default all come from the ``setting(...)``
declaration. Click only collects what the command line says; the settings class reads the
environment itself, so a flag and its variable go through the same pydantic parser and the
same rule for an empty value. ``settings_from_cli(WorkerSettings)`` then builds the object:
flags first, then variables, then defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import click
from annotated_types import Ge, Gt, Le, Lt
from click.core import ParameterSource
from click.types import FuncParamType
from pydantic import TypeAdapter, ValidationError

from vidjobs.db.settings import DatabaseSettings
from vidjobs.settings import Declared, Settings, SettingsError, declared, problem

__all__ = [
    "database_url_option",
    "log_level_option",
    "settings_from_cli",
    "settings_options",
    "setup_logging",
]

S = TypeVar("S", bound=Settings)
F = TypeVar("F", bound=Callable[..., Any])

_GIVEN = "vidjobs.settings.given"  # ctx.meta key: {settings class: {field: value from a flag}}


def _plain(text: str) -> str:
    return text.replace("``", "")


def _metavar(annotation: Any) -> str:
    if get_origin(annotation) is not None:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if all(isinstance(a, str) for a in args):  # a Literal
            return "[" + "|".join(args) + "]"
        annotation = args[0] if len(args) == 1 else annotation
    names = {int: "integer", float: "float", str: "text", Path: "path"}
    return names.get(annotation, "value")


def _setting_type(setting: Declared) -> FuncParamType[Any, Any]:
    """A flag's value type: the same pydantic validator the settings class uses for the field."""
    field = setting.field
    kind: Any = field.annotation
    if field.metadata:  # the constraints (ge=1 ...) and validators declared with it
        kind = Annotated[(kind, *field.metadata)]
    adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def parse(value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # empty = unset, as for a variable
        try:
            return adapter.validate_python(value.strip() if isinstance(value, str) else value)
        except ValidationError as exc:
            raise ValueError("; ".join(problem(e) for e in exc.errors())) from exc

    param_type: FuncParamType[Any, Any] = FuncParamType(parse)
    param_type.name = _metavar(field.annotation)
    return param_type


class _SettingOption(click.Option):
    """The option of one declared setting; its variable is shown in --help but never read here.

    The settings class reads the variable when it is built, so click must not parse it too.
    """

    def __init__(
        self, param_decls: list[str], *, setting: Declared, owner: type[Settings], **kwargs: Any
    ) -> None:
        super().__init__(param_decls, **kwargs)
        self.setting = setting
        self.owner = owner

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        return None

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        text = self.setting.default_text
        if text is None:
            extra["required"] = "required"
        elif self.is_bool_flag and self.secondary_opts:
            on = self.setting.field.get_default(call_default_factory=False)
            extra["default"] = (self.opts if on else self.secondary_opts)[0].lstrip("-")
        elif not self.is_flag:
            extra["default"] = text
        bounds = _bounds(self.setting)
        if bounds:
            extra["range"] = bounds
        return extra


def _bounds(setting: Declared) -> str:
    """The range click shows for its own number types, e.g. ``x>=1``."""
    parts = []
    for rule in setting.field.metadata:
        if isinstance(rule, Ge):
            parts.append(f"x>={rule.ge}")
        elif isinstance(rule, Gt):
            parts.append(f"x>{rule.gt}")
        elif isinstance(rule, Le):
            parts.append(f"x<={rule.le}")
        elif isinstance(rule, Lt):
            parts.append(f"x<{rule.lt}")
    return ", ".join(parts)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Keep a value the command line gave; the rest is left to the settings class."""
    assert isinstance(param, _SettingOption)
    given = ctx.meta.setdefault(_GIVEN, {}).setdefault(param.owner, {})
    if value is not None and ctx.get_parameter_source(param.name or "") is (
        ParameterSource.COMMANDLINE
    ):
        given[param.setting.name] = value


def settings_options(cls: type[Settings], *, only: Iterable[str] | None = None) -> Callable[[F], F]:
    """Add an option for each setting ``cls`` declares (those with a variable), or ``only`` some.

    The values do not become parameters of the command: read them with
    :func:`settings_from_cli`.
    """
    wanted = None if only is None else set(only)
    settings = [
        s for s in declared(cls) if s.env is not None and (wanted is None or s.name in wanted)
    ]

    def decorate(command: F) -> F:
        for setting in reversed(settings):
            bool_flag = setting.field.annotation is bool
            command = click.option(
                setting.flag,
                f"{cls.__name__}_{setting.name}",
                cls=_SettingOption,
                setting=setting,
                owner=cls,
                type=None if bool_flag else _setting_type(setting),
                is_flag=bool_flag,
                default=None,
                envvar=setting.env,
                show_envvar=True,
                show_default=False,
                expose_value=False,
                callback=_remember,
                help=_plain(setting.help),
            )(command)
        return command

    return decorate


def settings_from_cli(cls: type[S], **values: Any) -> S:
    """``cls(**values)`` plus the flags given for it: flags, then variables, then defaults.

    Raises:
        click.UsageError: a setting cannot take its value (the message names the variable).
    """
    ctx = click.get_current_context()
    given = ctx.meta.get(_GIVEN, {}).get(cls, {})
    try:
        return cls(**{**given, **values})
    except SettingsError as exc:
        raise click.UsageError(str(exc), ctx) from exc


def database_url_option(command: F) -> F:
    """``--database-url`` (``DATABASE_URL``) for a command that needs only the URL.

    The command gets it as its ``database_url`` parameter, read through ``DatabaseSettings``.
    """

    @functools.wraps(command)
    def with_url(*args: Any, **kwargs: Any) -> Any:
        return command(*args, database_url=settings_from_cli(DatabaseSettings).url, **kwargs)

    return settings_options(DatabaseSettings, only=["url"])(with_url)  # type: ignore[return-value]


def log_level_option(command: F) -> F:
    """``--log-level`` (``VIDJOBS_LOG_LEVEL``) of a long-running process; pass it to
    :func:`setup_logging`."""
    return click.option(
        "--log-level",
        envvar="VIDJOBS_LOG_LEVEL",
        show_envvar=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default="INFO",
        help="Log verbosity.",
    )(command)


def setup_logging(level: str) -> None:
    """One line per record on stderr: time, level, logger, message."""
    import logging
    import sys

    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
