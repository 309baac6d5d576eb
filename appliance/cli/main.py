"""The ``library`` command."""
from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click

from appliance.cli.areas import AreasGroup
from appliance.cli.common import CONTEXT, WORKERS_OPTION, load_settings, open_catalog
from appliance.settings import Settings, SettingsError, describe

logger = logging.getLogger(__name__)

@click.group(cls=AreasGroup, context_settings=CONTEXT)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), help="Data folder (LIBRARY_HOME).")
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, verbose: bool) -> None:
    """The community library box.

    Example: library --home /data/library serve --host 0.0.0.0
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # waitress warns on every request that waits for a free thread; with twenty phones that is a
    # line per request, written to the SD card, and it slowed the server itself.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        ctx.obj = Settings.from_env(home=home)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


@cli.command("import", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@WORKERS_OPTION
@click.option("--warnings", "show_warnings", is_flag=True,
              help="Also print the warnings of each imported book (a missing picture, a wrong language tag...).")
@click.pass_context
def import_command(ctx: click.Context, paths: tuple[Path, ...], jobs: int, show_warnings: bool) -> None:
    """Import EPUB files, or every EPUB found below folders.

    Unreadable files are quarantined with their reason; the rest go on.

    Example: library import /media/usb/books new-book.epub
    """
    from appliance.books.importer import Importer, find_epubs
    from appliance.search.index import SearchIndex
    from appliance.storage.atomic import NotEnoughDisk

    settings = load_settings(ctx)
    db = open_catalog(settings)
    index = SearchIndex(settings.index_dir)
    files = list(find_epubs(paths))
    if not files:
        raise click.ClickException("no EPUB files found there")
    importer = Importer(settings, db, index, workers=jobs)
    bulk = importer.wants_bulk(len(files))
    if bulk:
        click.echo("The search index will be rebuilt once the books are in (it keeps answering as it was until then).",
                   err=True)
    try:
        with click.progressbar(length=len(files), label="Importing", file=sys.stderr,
                               show_pos=True) as bar:
            report = importer.import_paths(files, progress=lambda _p: bar.update(1), bulk=bulk)
    except NotEnoughDisk as e:
        raise click.ClickException(str(e)) from None
    finally:
        index.close()
        db.close()
    click.echo(f"Imported: {len(report.imported)}")
    click.echo(f"Already in the catalog: {len(report.duplicates)}")
    click.echo(f"With warnings: {len({f for f, _ in report.warnings})}")
    if show_warnings:
        for path, warning in report.warnings:
            click.echo(f"  {path}: {warning}")
    click.echo(f"Quarantined: {len(report.quarantined)}")
    for path, reason in report.quarantined:
        click.echo(f"  {path}: {reason}")
    if report.index_busy:
        click.echo("The search index was busy: the server indexes the new books when it is free "
                   "(or run `library import` again, or `library reindex`).")


@cli.command(context_settings=CONTEXT)
@WORKERS_OPTION
@click.pass_context
def reindex(ctx: click.Context, jobs: int) -> None:
    """Rebuild the search index from the catalog.

    The box keeps serving while this runs; the new index replaces the old one at the end.

    Example: library reindex
    """
    from appliance.search import upkeep as indexing
    from appliance.search.index import SearchIndex

    settings = load_settings(ctx)
    db = open_catalog(settings)
    index = SearchIndex(settings.index_dir)
    try:
        count = indexing.rebuild(db, index, workers=jobs)
    finally:
        index.close()
        db.close()
    click.echo(f"Indexed {count} books.")


def run_server(settings: Settings) -> None:
    """Serve the web app with waitress until SIGTERM or Ctrl-C; bring the index up to date meanwhile."""
    from appliance.cli.admin import announce_setup_code
    from appliance.jobs.registry import start_index_keeper
    from appliance.memory import MemoryTrimmer, limit_arenas
    from appliance.server.http import StopFlag, create_server, serve_until, shared_port_sockets
    from appliance.server.options import prepare_server
    from appliance.server.processes import WorkerProcesses, worker_count
    from appliance.storage.blobs import BlobStore
    from appliance.web.context import services
    from appliance.web.factory import create_app

    limit_arenas()
    left = BlobStore(settings.blobs_dir).clean_temporaries()
    if left:
        logger.info("removed %d unfinished files a power cut or a crash left in the blob store", left)
    app = create_app(settings)
    count = worker_count(settings)
    sockets = shared_port_sockets(settings.host, settings.port, count) if count > 1 else None
    listen = {"sockets": [group[0] for group in sockets]} if sockets else {"host": settings.host, "port": settings.port}
    server = create_server(app, **listen, threads=settings.threads, ident="library", **prepare_server(settings, processes=count))
    workers = WorkerProcesses(app, settings, sockets) if sockets else None
    announce_setup_code(settings)
    keeper = start_index_keeper(services(app).library)
    discovery = None
    if settings.discovery:
        from appliance.discovery import start_for_box

        discovery = services(app).vans = start_for_box(settings, server.effective_port)
    trimmer = MemoryTrimmer()

    def tick() -> None:
        trimmer.tick()
        if workers is not None:
            workers.check()

    stopping = StopFlag()
    signal.signal(signal.SIGTERM, stopping.set)
    host, port = server.effective_host, server.effective_port
    try:
        if workers is not None:
            workers.start()
        click.echo(f"Library open at http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}/"
                   + (f" ({count} processes)" if count > 1 else ""))
        serve_until(server, stopping, idle=tick)
    except KeyboardInterrupt:
        server.close()
    finally:
        logger.info("stopping")
        if workers is not None:
            workers.stop()
        keeper.set()
        if discovery is not None:
            discovery.close()
        services(app).library.close()


@cli.command(context_settings=CONTEXT)
@click.option("--host", help="Address to listen on (LIBRARY_HOST).")
@click.option("--port", type=int, help="Port to listen on (LIBRARY_PORT); 0 picks a free one.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the library to readers' phones.

    Example: library serve --host 0.0.0.0 --port 80
    """
    run_server(load_settings(ctx, host=host, port=port))


@cli.command(context_settings=CONTEXT)
@click.option("--host", help="Address to listen on.")
@click.option("--port", type=int, help="Port to listen on.")
@click.option("--no-serve", is_flag=True, help="Only build the demo catalog.")
@click.pass_context
def demo(ctx: click.Context, host: str | None, port: int | None, no_serve: bool) -> None:
    """Make a small demo catalog (books the project writes itself) and serve it.

    Example: library demo --port 8080
    """
    from appliance.books.demo import write_demo_catalog
    from appliance.books.importer import Importer
    from appliance.search.index import SearchIndex

    settings = load_settings(ctx, host=host, port=port)
    db = open_catalog(settings)
    index = SearchIndex(settings.index_dir)
    try:
        files = write_demo_catalog(settings.home / "demo-books")
        report = Importer(settings, db, index).import_paths(files)
    finally:
        index.close()
        db.close()
    click.echo(f"Demo catalog in {settings.home}: {len(report.imported)} new, {len(report.duplicates)} already there.")
    if not no_serve:
        run_server(settings)


@cli.command("settings", context_settings=CONTEXT)
def settings_command() -> None:
    """List every setting with its environment variable and default.

    Example: library settings
    """
    for name, default, help_text in describe():
        click.echo(f"{name} (default {default})\n    {help_text}")


def main() -> None:
    from appliance.cli.areas import register_commands

    register_commands(cli)
    cli(prog_name="library")


if __name__ == "__main__":
    main()
