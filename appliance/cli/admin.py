"""``library admin``: librarian accounts from the box's own console, and the setup code at start."""
from __future__ import annotations

import logging

import click

from appliance.cli.common import CONTEXT, cli_catalog, load_settings, open_catalog
from appliance.settings import Settings
from appliance.storage import accounts as auth

logger = logging.getLogger(__name__)


def announce_setup_code(settings: Settings) -> str | None:
    """At server start: while no librarian account exists, make the setup code active and show it."""
    with cli_catalog(settings) as db:
        code = auth.prepare_setup_code(settings, db)
    if code:  # said once, on the console (the box's journal keeps it)
        click.echo(f"No librarian account yet. Open /admin/setup on this library and type the setup code "
                   f"{code} (or run: library admin create NAME).", err=True)
    return code


def _password(prompt: str) -> str:
    password = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    try:
        auth.check_new_password(password)
    except auth.AccountError as e:
        raise click.ClickException(str(e)) from None
    return password


def _find(db, username: str) -> auth.Admin:
    admin = auth.find_admin(db, username)
    if admin is None:
        raise click.ClickException(f"There is no librarian account called {username}. "
                                   "See them with: library admin list")
    return admin


@click.group("admin", context_settings=CONTEXT)
def admin_group() -> None:
    """Librarian accounts for the /admin pages.

    Example: library admin create mai
    """


@admin_group.command("create", context_settings=CONTEXT)
@click.argument("username")
@click.pass_context
def create(ctx: click.Context, username: str) -> None:
    """Add a librarian account; asks for its password twice.

    Example: library admin create mai
    """
    settings = load_settings(ctx)
    db = open_catalog(settings)
    try:
        name = auth.clean_username(username)
        if auth.find_admin(db, name) is not None:
            raise click.ClickException(f"There is already an account called {name}.")
        admin = auth.create_admin(db, name, _password(f"Password for {name}"))
        auth.forget_setup_code(settings, db)
    except auth.AccountError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    click.echo(f"Librarian account {admin.username} created. Log in at /admin/login.")


@admin_group.command("list", context_settings=CONTEXT)
@click.pass_context
def list_accounts(ctx: click.Context) -> None:
    """List the librarian accounts and how many sessions each has open.

    Example: library admin list
    """
    settings = load_settings(ctx)
    with cli_catalog(settings) as db:
        accounts = auth.list_admins(db)
    if not accounts:
        click.echo("No librarian accounts. Create one with: library admin create NAME")
    for a in accounts:
        click.echo(f"{a['username']}\t{a['sessions']} session(s) open")


@admin_group.command("passwd", context_settings=CONTEXT)
@click.argument("username")
@click.pass_context
def passwd(ctx: click.Context, username: str) -> None:
    """Set a new password for an account and log out all its sessions.

    Example: library admin passwd mai
    """
    settings = load_settings(ctx)
    db = open_catalog(settings)
    try:
        admin = _find(db, username)
        auth.set_password(db, admin.id, _password(f"New password for {admin.username}"))
    except auth.AccountError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    click.echo(f"Password of {admin.username} changed; its sessions are logged out.")


@admin_group.command("delete", context_settings=CONTEXT)
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, username: str, yes: bool) -> None:
    """Remove a librarian account (never the last one).

    Example: library admin delete mai --yes
    """
    settings = load_settings(ctx)
    db = open_catalog(settings)
    try:
        admin = _find(db, username)
        if not yes:
            click.confirm(f"Remove the librarian account {admin.username}?", abort=True)
        auth.delete_admin(db, admin.id)
    except auth.AccountError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    click.echo(f"Librarian account {admin.username} removed.")
