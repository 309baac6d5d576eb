"""Commands for signed releases: ``library keygen``, ``library trust``, ``library bundle ...``,
``library channels ...`` and ``library sync once``."""
from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.common import CONTEXT, cli_catalog, load_settings, open_catalog
from appliance.storage.atomic import NotEnoughDisk
from content_sync import publishing
from content_sync.protocol import minisign
from content_sync.protocol import releases as bundles
from content_sync.sync import apply
from content_sync.sync.sources import SourceError, source_for


def _secret_key(path: Path) -> minisign.SecretKey:
    try:
        return minisign.parse_secret_key(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"cannot read the key {path}: {e}") from None
    except minisign.MalformedKey as e:
        raise click.ClickException(f"{path}: {e}") from None


def _public_key(path: Path) -> minisign.PublicKey:
    try:
        return minisign.parse_public_key(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"cannot read the key {path}: {e}") from None
    except minisign.MalformedKey as e:
        raise click.ClickException(f"{path}: {e}") from None


@click.command("keygen", context_settings=CONTEXT)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the key pair.")
@click.option("--name", default="publisher", show_default=True, help="File name of the pair (NAME.key, NAME.pub).")
def keygen(out: Path, name: str) -> None:
    """Make an Ed25519 publisher key pair in minisign's format.

    NAME.key is readable only by you: keep it off the boxes. Give NAME.pub to every box
    (`library trust NAME.pub`).

    Example: library keygen --out ~/library-keys
    """
    try:
        secret, public = minisign.write_key_pair(out, name)
    except FileExistsError as e:
        raise click.ClickException(str(e)) from None
    key = minisign.parse_public_key(public.read_text())
    click.echo(f"Made key {key.key_id_hex}:\n  secret {secret} (keep private)\n  public {public}")


@click.command("trust", context_settings=CONTEXT)
@click.argument("pubkey", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def trust(ctx: click.Context, pubkey: Path) -> None:
    """Trust releases signed by this publisher key (copies it into keys/publishers/).

    Example: library trust /media/usb/publisher.pub
    """
    settings = load_settings(ctx)
    key = _public_key(pubkey)
    folder = apply.publisher_keys_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{key.key_id_hex}.pub"
    from appliance.storage.atomic import atomic_write_text

    atomic_write_text(target, key.to_text())
    click.echo(f"This box now trusts releases signed by key {key.key_id_hex}.")


@click.group("bundle", context_settings=CONTEXT)
def bundle_group() -> None:
    """Build, check and list signed channel releases (central staff)."""


@bundle_group.command("build", context_settings=CONTEXT)
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--channel", required=True, help="Channel name, e.g. vi-literature.")
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Publisher secret key (from library keygen).")
@click.option("--out", "tree", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Release tree to add the new version to.")
@click.option("--hub-key", "hub_key_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The hub's public key (hub-ed25519.pub), for boxes set up without it.")
def build(source: Path, channel: str, key_path: Path, tree: Path, hub_key_path: Path | None) -> None:
    """Make the next release of a channel from every EPUB under SOURCE, and sign it.

    Example: library bundle build ./vi-literature --channel vi-literature --key publisher.key --out /srv/releases
    """
    key = _secret_key(key_path)
    try:
        with click.progressbar(length=sum(1 for _ in source.rglob("*.epub")), label="Reading books") as bar:
            report = publishing.build_release(source, channel, key, tree, progress=lambda _p: bar.update(1),
                                           hub_key=hub_key_path.read_text().strip() if hub_key_path else None)
    except (bundles.BundleError, minisign.SignatureError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{channel} version {report.version}: {report.items} books ({report.added} new, {report.updated} "
               f"changed, {report.removed} removed), {report.new_blobs} new files in {tree}")
    for name, reason in report.skipped:
        click.echo(f"  left out {name}: {reason}")


@bundle_group.command("verify", context_settings=CONTEXT)
@click.argument("tree", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--channel", required=True)
@click.option("--pubkey", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify(tree: Path, channel: str, pubkey: Path) -> None:
    """Check every release of a channel in TREE: signature, format, every file's size and hash.

    Example: library bundle verify /srv/releases --channel vi-literature --pubkey publisher.pub
    """
    problems = bundles.verify_tree(tree, channel, [_public_key(pubkey)])
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(problems)} problem(s) in {tree}")
    click.echo(f"{channel}: versions {', '.join(map(str, bundles.tree_versions(tree, channel)))} verified")


@bundle_group.command("list", context_settings=CONTEXT)
@click.argument("tree", type=click.Path(exists=True, file_okay=False, path_type=Path))
def list_releases(tree: Path) -> None:
    """List the channels and versions in a release tree (without checking signatures).

    Example: library bundle list /srv/releases
    """
    import json

    folder = tree / "channels"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not names:
        click.echo("no channels")
    for name in names:
        for version in bundles.tree_versions(tree, name):
            try:
                manifest = json.loads((folder / name / str(version) / bundles.MANIFEST).read_bytes())
                count = len(manifest.get("items", []))
            except (OSError, ValueError):
                count = "?"
            click.echo(f"{name}\t{version}\t{count} books")


@click.group("channels", invoke_without_command=True, context_settings=CONTEXT)
@click.pass_context
def channels_group(ctx: click.Context) -> None:
    """List the channels this box follows, with the version installed.

    Example: library channels
    """
    if ctx.invoked_subcommand is not None:
        return
    with cli_catalog(load_settings(ctx)) as db:
        rows = apply.channel_rows(db)
    if not rows:
        click.echo("No channels yet: library channels subscribe NAME")
    for row in rows:
        state = "subscribed" if row["subscribed"] else "not subscribed"
        version = row["version"] if row["version"] is not None else "none"
        click.echo(f"{row['name']}\tversion {version}\t{row['books']} books\t{state}")


@channels_group.command("subscribe", context_settings=CONTEXT)
@click.argument("name")
@click.pass_context
def subscribe(ctx: click.Context, name: str) -> None:
    """Follow a channel: its releases are installed at the next sync.

    Example: library channels subscribe vi-literature
    """
    db = open_catalog(load_settings(ctx))
    try:
        apply.subscribe(db, name)
    except (bundles.BundleError, NotEnoughDisk) as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.close()
    click.echo(f"Subscribed to {name}.")


@channels_group.command("unsubscribe", context_settings=CONTEXT)
@click.argument("name")
@click.pass_context
def unsubscribe(ctx: click.Context, name: str) -> None:
    """Stop following a channel (its books stay).

    Example: library channels unsubscribe vi-literature
    """
    with cli_catalog(load_settings(ctx)) as db:
        if not apply.unsubscribe(db, name):
            raise click.ClickException(f"this box does not know a channel called {name}")
    click.echo(f"Unsubscribed from {name}.")


@click.group("sync", context_settings=CONTEXT)
def sync_group() -> None:
    """Fetch releases and exchange statistics."""


@sync_group.command("once", context_settings=CONTEXT)
@click.option("--from", "location", required=True, help="A release tree: folder, USB stick mount or http(s) URL.")
@click.pass_context
def once(ctx: click.Context, location: str) -> None:
    """Install the newest release of every subscribed channel from one place, then stop.

    Example: library sync once --from /media/usb/releases
    """
    settings = load_settings(ctx)
    try:
        source = source_for(location)
    except SourceError as e:
        raise click.ClickException(str(e)) from None
    with cli_catalog(settings) as db:
        if not apply.subscribed_channels(db):
            raise click.ClickException("this box follows no channel yet: library channels subscribe NAME")
        failed = 0
        for channel, outcome in apply.sync_once(settings, db, source):
            if isinstance(outcome, Exception):
                failed += 1
                click.echo(f"{channel}: refused: {outcome}", err=True)
            else:
                click.echo(apply.describe(outcome))
    if failed:
        raise click.ClickException(f"{failed} channel(s) not updated; the box keeps what it had")


@sync_group.command("run", context_settings=CONTEXT)
@click.option("--once", is_flag=True, help="Run every job once and stop (for cron, tests and trying it out).")
@click.pass_context
def run(ctx: click.Context, once: bool) -> None:
    """The sync agent: fetch new releases, send statistics, fix the clock, whenever the hub answers.

    Runs until stopped (SIGTERM); a systemd service keeps it running on the box.

    Example: LIBRARY_HUB_URL=https://hub.example.org library sync run
    """
    from content_sync.sync.agent import SyncAgent, run_forever

    settings = load_settings(ctx)
    agent = SyncAgent(settings)
    if not agent.jobs():
        raise click.ClickException("nothing to sync with: set LIBRARY_HUB_URL, LIBRARY_PEERS or LIBRARY_DISCOVERY=yes "
                                   "(or use library sync once --from PLACE)")
    if once:
        failed = 0
        for result in agent.run_once():
            click.echo(f"{result.job}: {'ok' if result.ok else 'not done'}: {result.detail}")
            failed += not result.ok
        if failed:
            raise click.ClickException(f"{failed} job(s) not done; see library sync status")
        return
    run_forever(agent, settings.sync_interval_minutes)


@sync_group.command("enroll", context_settings=CONTEXT)
@click.argument("token")
@click.pass_context
def enroll(ctx: click.Context, token: str) -> None:
    """Keep the enrollment token the central office issued for this box (library hub enroll).

    The box sends it in its signed registration, to the hub or through a van; the hub takes a box
    it does not know only with a token of its own.

    Example: library sync enroll 3q7Xh0Pp1cV8kZ2mT4rB9wYd
    """
    from content_sync.sync.registration import keep_enrollment_token

    token = token.strip()
    if not token or len(token) > 100 or not token.isprintable():
        raise click.ClickException("that is not an enrollment token: copy it as the central office gave it")
    keep_enrollment_token(load_settings(ctx), token)
    click.echo("Enrollment token kept; the box sends it with its next registration.")


@sync_group.command("status", context_settings=CONTEXT)
@click.pass_context
def status(ctx: click.Context) -> None:
    """What the sync agent did last, what it used today and what waits.

    Example: library sync status
    """
    from content_sync.sync.agent import SyncAgent, state_text

    for line in state_text(SyncAgent(load_settings(ctx)).status()):
        click.echo(line)


@click.group("hub", context_settings=CONTEXT)
def hub_group() -> None:
    """The central hub: publish releases, receive statistics (central office)."""


@hub_group.command("serve", context_settings=CONTEXT)
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Hub folder: tree/ (releases), hub.db, keys/.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--threads", default=16, show_default=True, type=int)
@click.option("--trusted-proxy", default="", metavar="ADDRESS",
              help="Address of a load balancer in front of the hub: its X-Forwarded-For names the client.")
@click.option("--open-enrollment", is_flag=True,
              help="Let any box register without a token (a closed network, or a test); off by default.")
def hub_serve(data_dir: Path, host: str, port: int, threads: int, trusted_proxy: str, open_enrollment: bool) -> None:
    """Serve the hub with waitress. Publish into DATA/tree with library bundle build --out DATA/tree.

    Example: library hub serve --data /srv/hub --host 0.0.0.0 --port 8090
    """
    import signal

    from appliance.server.http import StopFlag, create_server, serve_until
    from content_sync.hub.factory import create_hub_app

    server = create_server(create_hub_app(data_dir, open_enrollment=open_enrollment), host=host, port=port,
                           threads=threads, ident="library-hub", trusted_proxy=trusted_proxy)
    stopping = StopFlag()
    signal.signal(signal.SIGTERM, stopping.set)
    click.echo(f"Hub open at http://{server.effective_host}:{server.effective_port}/ ; releases from {data_dir / 'tree'}")
    try:
        serve_until(server, stopping)
    except KeyboardInterrupt:
        server.close()


@click.group("stats", context_settings=CONTEXT)
def stats_group() -> None:
    """Usage statistics: counts only, nothing about readers."""


@stats_group.command("export", context_settings=CONTEXT)
@click.pass_context
def stats_export(ctx: click.Context) -> None:
    """Put the counts not sent yet into a signed batch in the outbox (the sync agent uploads it).

    Example: library stats export
    """
    from appliance.stats.counts import recorder
    from content_sync.protocol import batches as statsbatch

    settings = load_settings(ctx)
    with cli_catalog(settings) as db:
        if recorder() is not None:
            recorder().flush()
        path = statsbatch.export_batch(db, settings.outbox_dir, statsbatch.load_box_key(settings.keys_dir),
                                       min_term_count=settings.stats_min_term_count, box_name=settings.box_name)
    pending = len(statsbatch.pending_batches(settings.outbox_dir))
    if path is None:
        click.echo(f"Nothing new to export; {pending} batch(es) wait in the outbox.")
    else:
        click.echo(f"Wrote {path}; {pending} batch(es) wait in the outbox.")


@hub_group.command("enroll", context_settings=CONTEXT)
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Hub folder (as for library hub serve).")
@click.option("--label", default="", help="What the token is for (a commune, a card's number), kept beside it.")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 10_000), help="How many tokens.")
def hub_enroll(data_dir: Path, label: str, count: int) -> None:
    """Issue enrollment tokens, one per box: a box registers the first time with its own token.

    Give each token to one box (library sync enroll TOKEN on it, or in its card's setup); a token
    serves one box key only. Only the tokens' hashes are kept.

    Example: library hub enroll --data /srv/hub --label "Bản Phố" --count 1
    """
    from content_sync.hub.store import SqliteHubStore

    store = SqliteHubStore(data_dir / "hub.db")
    for _ in range(count):
        click.echo(store.issue_enrollment(label))
