"""``library config``: the box's system files and its first start."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import click

from appliance.cli.common import CONTEXT, load_settings
from appliance.system import ConfigError, ImageLayout, render_all, write_files


@click.group("config", context_settings=CONTEXT)
def config_group() -> None:
    """System files of the box image (Wi-Fi, DHCP and DNS, services, mounts).

    Example: library config render --out /tmp/box-files
    """


@config_group.command("render", context_settings=CONTEXT)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into; files land at their path on the box (OUT/etc/fstab, ...).")
@click.option("--venv", default=str(ImageLayout.venv), show_default=True,
              help="Virtual environment holding the library on the box.")
@click.option("--user", "user", default=ImageLayout.user, show_default=True,
              help="Unprivileged user the services run as.")
@click.option("--data-mount", default=str(ImageLayout.data_mount), show_default=True,
              help="Mount point of the writable data partition; LIBRARY_HOME must be inside it.")
@click.pass_context
def render_command(ctx: click.Context, out: Path, venv: str, user: str, data_mount: str) -> None:
    """Render every system file of the box from its settings (LIBRARY_* variables).

    hostapd (the Wi-Fi), dnsmasq (addresses for phones, the library's name and the captive-portal
    answers), systemd units for the web server, the sync agent and the first start, the
    environment file they read, and /etc/fstab for a read-only root with a data partition.

    Example: LIBRARY_HOME=/data/library LIBRARY_HOST=0.0.0.0 LIBRARY_PORT=80 library config render --out build/rootfs
    """
    for name, value in (("--venv", venv), ("--data-mount", data_mount)):
        if not value.startswith("/"):
            raise click.ClickException(f"{name} must be an absolute path on the box, not {value!r}")
    settings = load_settings(ctx)
    layout = ImageLayout(venv=PurePosixPath(venv), user=user, data_mount=PurePosixPath(data_mount))
    try:
        files = render_all(settings, layout)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    try:
        write_files(files, out)
    except OSError as e:
        raise click.ClickException(f"cannot write the files into {out}: {e.strerror or e}") from None
    for f in files:
        click.echo(f"{f.path}")
    click.echo(f"Rendered {len(files)} files into {out}.")


@config_group.command("first-boot", context_settings=CONTEXT)
@click.pass_context
def first_boot_command(ctx: click.Context) -> None:
    """Make the data folder and this box's own key and admin setup code, if they are missing.

    Run by the box's first-boot service as the library user; running it again changes nothing.

    Example: library --home /data/library config first-boot
    """
    from appliance.system.firstboot import prepare_box

    settings = load_settings(ctx)
    try:
        result = prepare_box(settings)
    except OSError as e:
        raise click.ClickException(f"cannot prepare the data folder {settings.home}: {e.strerror or e}") from None
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Data folder: {settings.home}")
    click.echo(f"Box public key: {result.box_public_key}")
    if result.admin_setup_code:
        click.echo(f"Admin setup code: {result.admin_setup_code}")
    click.echo("Made: " + (", ".join(result.created) if result.created else "nothing, all there already"))
