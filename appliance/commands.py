"""Where the command groups of each area join the ``library`` command."""
from __future__ import annotations

import click


def register_commands(cli: click.Group) -> None:
    """Add the subcommand groups of the other areas (bundles, sync, stats, admin, config...)."""
    from content_sync.cli import commands as sync_commands

    from .admin_cli import admin_group
    from .sysconfig.cli import config_group

    groups: list[click.Command] = [config_group, admin_group, *sync_commands]
    for command in groups:
        cli.add_command(command)
