"""The one console script, ``vidjobs``, with a subcommand per process or task.

Every flag also reads an environment variable, named in ``--help`` (``show_envvar``). Each
subcommand lives in its own module here and imports its heavy dependencies lazily, so
``vidjobs --help`` and ``vidjobs db status`` stay fast.
"""

from __future__ import annotations

import importlib

import click

from vidjobs import __version__

__all__ = ["main"]

# (module, attribute) of every subcommand group or command, in --help order.
_COMMANDS: list[tuple[str, str]] = [
    ("vidjobs.cli.db", "db"),
    ("vidjobs.cli.client", "submit"),
    ("vidjobs.cli.client", "status"),
    ("vidjobs.cli.client", "results"),
    ("vidjobs.cli.client", "jobs"),
    ("vidjobs.cli.client", "cancel"),
    ("vidjobs.cli.client", "delete"),
    ("vidjobs.cli.worker", "worker"),
    ("vidjobs.cli.api", "api"),
    ("vidjobs.cli.keys", "keys"),
    ("vidjobs.cli.tenants", "tenants"),
    ("vidjobs.cli.webhooks", "webhooks"),
    ("vidjobs.cli.demo", "demo"),
    ("vidjobs.cli.demo", "dev"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="vidjobs")
def main() -> None:
    """vidjobs: upload MP4 videos, analyse them on horizontally scaled workers, read results.

    Postgres is the queue. Every option can also be set through the environment variable shown
    in its help.
    """


for _module, _attr in _COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))
