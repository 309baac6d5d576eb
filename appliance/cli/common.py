"""What the ``library`` command's groups share: the help option, settings, the catalog, ``--jobs``."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from appliance.settings import Settings, SettingsError
from appliance.storage import db

CONTEXT = {"help_option_names": ["-h", "--help"]}


def load_settings(ctx: click.Context, **overrides) -> Settings:
    base: Settings = ctx.obj
    changes = {k: v for k, v in overrides.items() if v is not None}
    try:
        return base.replace(**changes) if changes else base
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def open_catalog(settings: Settings):
    try:
        return db.connect(settings.db_path)
    except Exception as e:  # sqlite3.DatabaseError and friends
        raise click.ClickException(f"cannot open the catalog at {settings.db_path}: {e}") from None


@contextmanager
def cli_catalog(settings: Settings) -> Iterator:
    """``with cli_catalog(settings) as db:`` the catalog, or a sentence saying why it cannot be opened."""
    db = open_catalog(settings)
    try:
        yield db
    finally:
        db.close()


def default_jobs() -> int:
    """Processes an import or a rebuild uses: two where there are two cores. At 10,075 books a
    worker reading books took 70 MB, one building the index up to 230 MB, and the whole import at
    most 510 MB (the box has 1 GB)."""
    return max(1, min(2, os.cpu_count() or 1))


# ``--jobs``: how many worker processes an import or a rebuild uses.
WORKERS_OPTION = click.option("--jobs", "-j", type=click.IntRange(1, 8), default=default_jobs, show_default="2; 1 on a one-core machine",
                    help="How many processes read the books and build the search index.")
