"""Settings: each one declared once, with its type, default, environment variable and help.

Every settings class of the product (one per concern: database, blobs, API, worker, pipeline)
derives from :class:`Settings` and declares each field with :func:`setting`::

    class WorkerSettings(Settings):
        concurrency: int = setting(1, env="VIDJOBS_WORKER_CONCURRENCY", ge=1, help="...")

Everything else is derived from that one line: building ``WorkerSettings()`` reads
``VIDJOBS_WORKER_CONCURRENCY`` (a keyword argument beats the variable, the variable beats the
default), ``vidjobs.cli.options`` makes it the ``--concurrency`` flag, and
``scripts/settings_table.py`` puts it in the table of docs/operations.md. pydantic parses every
value, from a variable, a flag or code, with one parser per type; a variable that is empty (or
only blanks) counts as unset. A value a setting cannot take raises :class:`SettingsError`,
naming the variable.

This module imports nothing of ours, so every layer may import it (an import-linter contract).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["Declared", "Settings", "SettingsError", "declared", "problem", "setting"]


class SettingsError(ValueError):
    """A setting got a value it cannot take; the message names the variable and the rule."""


def setting(
    default: Any = PydanticUndefined,
    *,
    env: str | None,
    help: str,
    flag: str | None = None,
    default_factory: Callable[[], Any] | None = None,
    shown_default: str | None = None,
    **constraints: Any,
) -> Any:
    """Declare one setting (a pydantic field that also knows its variable and flag).

    Args:
        default: the value when neither code, flag nor variable gives one; omit it for a
            required setting.
        env: the environment variable that sets it; ``None`` for a setting code alone sets.
        help: what it means and why one would change it: the flag's ``--help`` and the docs.
        flag: the CLI flag when it is not ``--`` plus the field name in kebab case (a
            ``--on/--off`` pair for a boolean), e.g. for a field whose name ends in a unit.
        default_factory: computes the default instead (``default`` must then be omitted).
        shown_default: how ``--help`` and the docs say a computed default.
        **constraints: pydantic field constraints (``ge``, ``gt``, ``le``, ``lt``, ``repr``).
    """
    extra: dict[str, Any] = {"env": env, "flag": flag, "shown_default": shown_default}
    if default_factory is not None:
        kwargs: dict[str, Any] = {"default_factory": default_factory}
    else:
        kwargs = {"default": default}
    return Field(**kwargs, description=help, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class Declared:
    """One declared setting, as the CLI and the docs table need it."""

    name: str
    """The field name (what code passes and reads)."""
    env: str | None
    """Its environment variable, or None for a setting only code sets."""
    flag: str
    """Its CLI flag: ``--name`` or ``--on/--off``."""
    help: str
    default_text: str | None
    """The default as a person reads it (``none``, ``true``, ``""``); None when required."""
    field: FieldInfo


def _extra(field: FieldInfo) -> Mapping[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def _default_text(field: FieldInfo) -> str | None:
    shown = _extra(field).get("shown_default")
    if shown is not None:
        return str(shown)
    if field.is_required():
        return None
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if str(value) else '""'


def _flag(name: str, field: FieldInfo) -> str:
    explicit = _extra(field).get("flag")
    if explicit:
        return str(explicit)
    flag = "--" + name.replace("_", "-")
    return f"{flag}/--no-{flag[2:]}" if field.annotation is bool and field.default else flag


def declared(cls: type[Settings]) -> list[Declared]:
    """The settings ``cls`` declares, in order; nested settings objects are left out."""
    return [
        Declared(
            name=name,
            env=_extra(field).get("env"),
            flag=_flag(name, field),
            help=field.description or "",
            default_text=_default_text(field),
            field=field,
        )
        for name, field in cls.model_fields.items()
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, Settings))
    ]


class _DeclaredVariables(PydanticBaseSettingsSource):
    """Each field's declared variable and no other name (no prefix, no guess from the field name).

    pydantic-settings' own environment source would also read a variable named like the field
    (``PORT``, ``HOST``), which a machine may well have set for something else.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The variable's value, stripped; None when unset, empty or blank."""
        var = _extra(field).get("env")
        raw = os.environ.get(var, "") if var else ""
        return raw.strip() or None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Field name -> raw value of every declared variable that is set."""
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


# pydantic messages said the way a person reads a setting (the rest keep pydantic's words).
_PLAIN = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "bool_parsing": "is not a boolean (true/false, 1/0, yes/no, on/off)",
    "missing": "is required and not set",
}


def problem(error: ErrorDetails) -> str:
    """What is wrong, in words, for one pydantic error (the CLI uses it for a flag's value)."""
    template = _PLAIN.get(error["type"])
    if template is not None:
        return template.format(**error.get("ctx", {}))
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return error["msg"]


def _explain(cls: type[Settings], exc: ValidationError) -> str:
    """One line per problem: which variable (or field), what is wrong, what it got."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        name = str(loc[0]) if loc else ""
        field = cls.model_fields.get(name)
        env = _extra(field).get("env") if field is not None else None
        where = f"{env} ({name})" if env else name
        secret = field is not None and not field.repr  # a key or password: never echoed
        got = f", got {error['input']!r}" if loc and error["type"] != "missing" else ""
        got = ", got a value that is not shown (a secret)" if got and secret else got
        lines.append(f"{where}: {problem(error)}{got}" if where else problem(error))
    return "; ".join(lines)


class Settings(BaseSettings):
    """Base of every settings class: frozen, validated, read from the declared variables.

    ``SomeSettings(**values)`` takes ``values`` first, then each field's declared variable,
    then the default; copies with changes are ``settings.model_copy(update={...})``.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(f"{type(self).__name__}: {_explain(type(self), exc)}") from exc

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the declared variables; no .env or secrets files."""
        return init_settings, _DeclaredVariables(settings_cls)
