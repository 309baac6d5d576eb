"""Where the command groups of each area join the ``library`` command.

They are imported when a command line names them (or asks for the list), not at every start:
``library serve`` would otherwise load the bundle, sync and import code, with the EPUB reader,
Pillow and the cryptography library, into the server for nothing (about 7 MB of its memory).
"""
from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group
AREAS = {
    "config": "appliance.cli.config:config_group",
    "admin": "appliance.cli.admin:admin_group",
    "keygen": "content_sync.cli:keygen",
    "trust": "content_sync.cli:trust",
    "bundle": "content_sync.cli:bundle_group",
    "channels": "content_sync.cli:channels_group",
    "sync": "content_sync.cli:sync_group",
    "stats": "content_sync.cli:stats_group",
    "hub": "content_sync.cli:hub_group",
}


class AreasGroup(click.Group):
    """A click group that imports the commands of ``AREAS`` when first asked for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, attribute = self.lazy[name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            if command.name != name:
                raise RuntimeError(f"{self.lazy[name]} is named {command.name!r}, not {name!r}")
            self.add_command(command)
        return super().get_command(ctx, name)


def register_commands(cli: AreasGroup) -> None:
    """Add the subcommand groups of the other areas (bundles, sync, stats, admin, config...)."""
    cli.lazy.update(AREAS)
