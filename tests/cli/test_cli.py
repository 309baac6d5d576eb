"""The ``library`` command as a librarian uses it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from appliance.settings import describe
from appliance.storage import db as dbmod


def test_import_summary_duplicates_and_quarantine(runner, settings, make_epub, tmp_path):
    folder = tmp_path / "usb"
    make_epub(title="Một", folder=folder / "a")
    make_epub(title="Hai", folder=folder / "b")
    (folder / "broken.epub").write_bytes(b"this is not a zip file")
    (folder / "notes.txt").write_text("ignored")
    result = runner.invoke(["import", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Imported: 2" in result.output
    assert "Quarantined: 1" in result.output
    assert "broken.epub" in result.output
    again = runner.invoke(["import", str(folder)])
    assert "Imported: 0" in again.output
    assert "Already in the catalog: 2" in again.output
    db = dbmod.connect(settings.db_path)
    assert db.execute("SELECT count(*) FROM books").fetchone()[0] == 2
    reasons = [r["reason"] for r in db.query("SELECT reason FROM quarantine")]
    db.close()
    assert len(reasons) == 1 and reasons[0]
    assert any(p.name.endswith("broken.epub") for p in settings.quarantine_dir.iterdir())


def test_import_reads_regular_files_only(runner, settings, make_epub, tmp_path):
    """A USB stick may hold links to secrets, FIFOs or devices named like books: none is read, none
    is copied into quarantine (where the librarian's pages hand files out), and the import ends."""
    import os
    import stat

    secret = tmp_path / "publisher.key"
    secret.write_text("untrusted comment: minisign secret key\n")
    secret.chmod(0o600)
    folder = tmp_path / "usb"
    make_epub(title="Thật", folder=folder)
    (folder / "key.epub").symlink_to(secret)
    (folder / "passwd.epub").symlink_to("/etc/passwd")
    (folder / "linked-folder").symlink_to(tmp_path)  # a loop, and a way out of the stick
    os.mkfifo(folder / "fifo.epub")
    (folder / "zero.epub").symlink_to("/dev/zero")
    broken = folder / "broken.epub"
    broken.write_bytes(b"not a zip")
    result = runner.invoke(["import", str(folder), str(folder / "fifo.epub"), str(folder / "key.epub")])
    assert result.exit_code == 0, result.output
    assert "Imported: 1" in result.output
    assert "symbolic link" in result.output and "not a regular file" in result.output
    kept = list(settings.quarantine_dir.iterdir())
    assert [p.name.endswith("broken.epub") for p in kept] == [True]
    assert stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    assert not any(b"minisign" in p.read_bytes() or b"root:" in p.read_bytes() for p in kept)


def test_import_nothing_found_is_a_clear_error(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(["import", str(empty)])
    assert result.exit_code != 0
    assert "no EPUB files found" in result.output


def test_reindex_rebuilds(runner, settings, make_epub):
    make_epub(title="Ba")
    runner.invoke(["import", str(settings.home.parent / "epubs")])
    result = runner.invoke(["reindex"])
    assert result.exit_code == 0
    assert "Indexed 1 books." in result.output


def test_demo_builds_catalog_without_serving(runner, settings):
    result = runner.invoke(["demo", "--no-serve"])
    assert result.exit_code == 0, result.output
    db = dbmod.connect(settings.db_path)
    titles = {r[0] for r in db.execute("SELECT title FROM books")}
    db.close()
    assert "Thư viện trên núi" in titles and len(titles) >= 5


DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_has_a_row_in_the_settings_manual():
    table = (DOCS / "settings.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `LIBRARY_")}
    missing = [name for name, _default, _help in describe() if name not in rows]
    assert not missing, f"settings missing from docs/settings.md: {missing}"
    unknown = rows - {name for name, _default, _help in describe()}
    assert not unknown, f"docs/settings.md names settings that do not exist: {unknown}"


def test_every_command_is_documented_in_the_manual():
    from appliance.cli.main import cli

    manual = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))

    def commands(group, prefix):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            yield f"{prefix} {name}"
            if isinstance(command, click.Group):
                yield from commands(command, f"{prefix} {name}")

    missing = [c for c in commands(cli, "library") if f"`{c}" not in manual and f"{c}`" not in manual]
    assert not missing, f"commands missing from docs/: {missing}"


def test_bad_setting_value_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from appliance.cli.main import cli

    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "settings"], env={"LIBRARY_PORT": "eighty"})
    assert result.exit_code != 0
    assert "LIBRARY_PORT must be a whole number" in result.output


def test_a_process_the_box_starts_gets_its_settings_as_they_are_empty_ones_too(tmp_path):
    """An empty variable means "the default" (a unit file may set LIBRARY_HUB_URL= to nothing), so
    the LIBRARY_* variables cannot pass on a setting whose default is not empty set to nothing:
    the processes the server starts get the whole settings instead."""
    import subprocess
    import sys

    from appliance.settings import Settings

    settings = Settings(home=tmp_path / "home", box_name="", wifi_ssid="", port=0, discovery=True,
                        sync_hours="22-6")
    assert Settings.from_env(settings.to_env()).box_name == "Thư viện cộng đồng"
    assert Settings.from_json(settings.to_json()) == settings
    code = "from appliance.settings import Settings; print(repr(Settings.passed_on()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=settings.child_env(),
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr(settings)


def test_serving_does_not_load_the_other_areas_until_named(tmp_path):
    """``library serve`` loads neither the bundle and sync code nor the cryptography library; the
    commands of those areas still come when named."""
    import subprocess
    import sys

    code = (
        "import sys, click\n"
        "from appliance.cli.main import cli\n"
        "from appliance.cli.areas import register_commands\n"
        "register_commands(cli)\n"
        "ctx = click.Context(cli)\n"
        "assert cli.get_command(ctx, 'serve') is not None\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('content_sync', 'cryptography', 'ebooklib'))\n"
        "assert not loaded, loaded\n"
        "assert cli.get_command(ctx, 'sync').name == 'sync'\n"
        "assert 'content_sync.cli' in sys.modules\n"
        "assert 'trust' in cli.list_commands(ctx) and cli.get_command(ctx, 'nothing') is None\n"
        "assert all(cli.get_command(ctx, name).name == name for name in cli.list_commands(ctx))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr


def test_an_import_as_large_as_the_catalog_rebuilds_the_index_once(runner, settings, make_epub, tmp_path,
                                                                    monkeypatch):
    from appliance.books import importer
    from appliance.search.index import SearchIndex

    monkeypatch.setattr(importer, "BULK_IMPORT_FILES", 4)
    words = ["khèn", "nương", "suối", "mây", "chợ", "bếp", "trâu", "ngô"]
    for n, word in enumerate(words):
        make_epub(title=f"Sách {n}", chapters=[("Một", [f"Ở bản có {word} và nhiều thứ khác."])],
                  folder=tmp_path / ("first" if n < 5 else "later"))

    def found(word: str) -> int:
        index = SearchIndex(settings.index_dir)
        try:
            return index.search(word).total
        finally:
            index.close()

    result = runner.invoke(["import", str(tmp_path / "first")])  # 5 books, catalog empty: one rebuild
    assert result.exit_code == 0 and "Imported: 5" in result.output, result.output
    assert "rebuilt once the books are in" in result.output
    index = SearchIndex(settings.index_dir)
    assert index.segment_count() == 1
    index.close()
    assert [found(w) for w in words[:5]] == [1] * 5
    db = dbmod.connect(settings.db_path)
    assert db.execute("SELECT count(*) FROM index_queue").fetchone()[0] == 0
    db.close()

    result = runner.invoke(["import", str(tmp_path / "later")])  # 3 books into 5: an update
    assert result.exit_code == 0 and "Imported: 3" in result.output, result.output
    assert "rebuilt" not in result.output
    index = SearchIndex(settings.index_dir)
    assert index.segment_count() == 2
    index.close()
    assert [found(w) for w in words] == [1] * 8


def test_an_index_update_is_one_segment_however_many_books_it_takes_in(settings, make_epub, tmp_path):
    from appliance.books.importer import Importer, ImportReport
    from appliance.search import upkeep as indexing
    from appliance.search.index import SearchIndex
    from appliance.storage import catalog

    db = dbmod.connect(settings.db_path)
    index = SearchIndex(settings.index_dir)
    try:
        importer = Importer(settings, db, None)  # the catalog only; the queue keeps what to index
        words = ["khèn", "nương", "suối", "mây", "chợ", "bếp"]
        for n, word in enumerate(words[:4]):
            importer.import_file(make_epub(title=f"Sách {n}", chapters=[("Một", [f"Có {word} ở bản."])]), ImportReport())
        assert indexing.catch_up(db, index) == 4
        assert index.segment_count() == 1 and index.search("khen").total == 1
        catalog.remove_book(db, 1)
        for n, word in enumerate(words[4:], start=4):
            importer.import_file(make_epub(title=f"Sách {n}", chapters=[("Một", [f"Có {word} ở bản."])]), ImportReport())
        assert indexing.catch_up(db, index) == 3  # one removal and two books: one more segment
        assert index.segment_count() == 2
        assert [index.search(w).total for w in ("khen", "nuong", "cho", "bep")] == [0, 1, 1, 1]
        assert db.execute("SELECT count(*) FROM index_queue").fetchone()[0] == 0
        assert indexing.catch_up(db, index) == 0 and index.segment_count() == 2
    finally:
        index.close()
        db.close()


def test_an_import_goes_on_when_the_index_is_busy(runner, settings, make_epub, tmp_path, monkeypatch):
    from appliance.books import importer
    from appliance.search import upkeep as indexing
    from appliance.search.errors import IndexBusy
    from appliance.search.index import SearchIndex

    def busy(db, index):
        raise IndexBusy("held by another writer")

    monkeypatch.setattr(importer, "catch_up", busy)
    make_epub(title="Sách bận", chapters=[("Một", ["Tiếng khèn trên đồi."])], folder=tmp_path / "usb")
    result = runner.invoke(["import", str(tmp_path / "usb")])
    assert result.exit_code == 0, result.output
    assert "Imported: 1" in result.output and "The search index was busy" in result.output
    db = dbmod.connect(settings.db_path)
    index = SearchIndex(settings.index_dir)
    try:
        assert db.execute("SELECT count(*) FROM index_queue").fetchone()[0] == 1  # waiting, not lost
        indexing.catch_up(db, index)
        assert index.search("khen").total == 1
    finally:
        index.close()
        db.close()


def test_an_import_with_two_jobs_reads_and_indexes_in_worker_processes(runner, settings, make_epub, tmp_path,
                                                                        monkeypatch):
    """``--jobs 2``: the files are read by two worker processes and the index is rebuilt in two
    parts, a segment each; the catalog gets what one process would give it, in the files' order,
    with the broken file quarantined and a copy of a book seen as one."""
    from appliance.books import importer
    from appliance.search import upkeep as indexing
    from appliance.search.index import SearchIndex

    monkeypatch.setattr(importer, "BULK_IMPORT_FILES", 4)
    monkeypatch.setattr(importer, "PARALLEL_FILES", 4)
    monkeypatch.setattr(indexing, "PARALLEL_BOOKS", 4)
    folder = tmp_path / "usb"
    words = ["khèn", "nương", "suối", "mây", "chợ", "bếp", "trâu", "ngô", "lúa", "rừng", "thác", "đèo"]
    for n, word in enumerate(words):
        make_epub(title=f"Sách {n:02d}", chapters=[("Một", [f"Ở bản có {word} và nhiều thứ khác."] * (n + 1))],
                  folder=folder, name=f"{n:02d}.epub")
    (folder / "05a-broken.epub").write_bytes(b"PK\x03\x04 not really a zip")
    (folder / "99-copy.epub").write_bytes((folder / "03.epub").read_bytes())

    result = runner.invoke(["import", "--jobs", "2", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Imported: 12" in result.output and "Quarantined: 1" in result.output, result.output
    assert "Already in the catalog: 1" in result.output and "05a-broken.epub" in result.output
    db = dbmod.connect(settings.db_path)
    try:
        titles = [r[0] for r in db.execute("SELECT title FROM books ORDER BY id")]
        assert titles == [f"Sách {n:02d}" for n in range(12)]
        assert db.execute("SELECT count(*) FROM index_queue").fetchone()[0] == 0
    finally:
        db.close()
    index = SearchIndex(settings.index_dir)
    try:
        assert index.segment_count() == 2
        assert [index.search(w).total for w in words] == [1] * 12
        assert index.search("ban").total == 12
    finally:
        index.close()

    result = runner.invoke(["reindex", "--jobs", "2"])
    assert result.exit_code == 0 and "Indexed 12 books." in result.output
    result = runner.invoke(["reindex", "--jobs", "1"])
    assert result.exit_code == 0 and "Indexed 12 books." in result.output
    index = SearchIndex(settings.index_dir)
    try:
        assert index.segment_count() == 1 and index.search("khen").total == 1
    finally:
        index.close()


def test_an_import_goes_on_when_a_worker_process_dies(settings, make_epub, tmp_path, monkeypatch):
    """A worker killed mid-import (by the kernel, for memory, say): the files it and the others
    had not given back are read by the importing process itself; nothing is lost or doubled."""
    import os
    import signal
    from concurrent.futures import ProcessPoolExecutor

    class KillsAWorker(ProcessPoolExecutor):
        submitted = 0

        def submit(self, fn, /, *args, **kwargs):
            future = super().submit(fn, *args, **kwargs)
            KillsAWorker.submitted += 1
            if KillsAWorker.submitted == 3:
                os.kill(next(iter(self._processes)), signal.SIGKILL)
            return future

    report, titles = _import_with_pool(KillsAWorker, 10, settings, make_epub, tmp_path, monkeypatch)
    assert KillsAWorker.submitted >= 3
    assert len(report.imported) == 10 and not report.quarantined and not report.duplicates
    assert titles == [f"Sách {n}" for n in range(10)]


def _import_with_pool(pool_class, books: int, settings, make_epub, tmp_path, monkeypatch):
    """Import ``books`` made-up books with two workers from a pool of ``pool_class``: the report,
    and the catalog's titles in id order."""
    from appliance import workerpool as workers
    from appliance.books import importer
    from appliance.books.importer import Importer

    monkeypatch.setattr(workers, "ProcessPoolExecutor", pool_class)
    monkeypatch.setattr(importer, "PARALLEL_FILES", 2)
    folder = tmp_path / "usb"
    for n in range(books):
        make_epub(title=f"Sách {n}", folder=folder, name=f"{n:02d}.epub")
    db = dbmod.connect(settings.db_path)
    try:
        report = Importer(settings, db, None, workers=2).import_paths([folder])
        return report, [r[0] for r in db.execute("SELECT title FROM books ORDER BY id")]
    finally:
        db.close()


def test_a_record_that_cannot_come_back_from_a_worker_quarantines_its_file(settings, make_epub, tmp_path,
                                                                            monkeypatch):
    import pickle
    from concurrent.futures import Future, ProcessPoolExecutor

    class LosesOne(ProcessPoolExecutor):
        def submit(self, fn, /, path, *args, **kwargs):
            if path.name != "03.epub":
                return super().submit(fn, path, *args, **kwargs)
            lost: Future = Future()
            lost.set_exception(pickle.PicklingError("cannot pickle the record"))
            return lost

    report, titles = _import_with_pool(LosesOne, 6, settings, make_epub, tmp_path, monkeypatch)
    assert titles == [f"Sách {n}" for n in (0, 1, 2, 4, 5)]
    assert [(Path(f).name, "PicklingError" in str(why)) for f, why in report.quarantined] == [("03.epub", True)]


def test_import_prints_each_warning_when_asked(runner, make_epub, tmp_path):
    book = make_epub(title="Không rõ tiếng", language="x-klingon-unknown",
                     chapters=[("Chương một", ["Ngày xưa có một cô gái nghèo sống cùng mẹ già ở làng bên sông. "
                                               "Hằng ngày cô ra đồng làm việc từ sáng sớm đến tối mịt."] * 8)])
    quiet = runner.invoke(["import", str(book)])
    assert "With warnings: 1" in quiet.output and "not a language tag" not in quiet.output
    again = runner.invoke(["import", "--warnings", str(book)])  # already there: nothing imported, nothing to say
    assert "With warnings: 0" in again.output
    other = make_epub(title="Cũng không rõ", language="x-klingon-unknown",
                      chapters=[("Chương một", ["Hằng ngày cô ra đồng làm việc từ sáng sớm đến tối mịt."] * 12)])
    said = runner.invoke(["import", "--warnings", str(other)])
    assert f"  {other}: dc:language is 'x-klingon-unknown', which is not a language tag" in said.output



def test_a_first_start_reads_calm_and_says_the_setup_code_once(settings, make_epub, tmp_path, caplog, capsys):
    """A new data folder is not a damaged one: the first import makes the index without a warning,
    and the setup code is said once, not as a warning and as text."""
    import logging

    from appliance.cli.admin import announce_setup_code

    book = make_epub(title="Sách đầu tiên")
    env = dict(os.environ, LIBRARY_HOME=str(settings.home))
    done = subprocess.run([sys.executable, "-m", "appliance.cli.main", "import", str(book)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr and "unusable" not in done.stderr, done.stderr
    with caplog.at_level(logging.INFO):
        code = announce_setup_code(settings)
    said = capsys.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    assert code and said.count(code) == 1


def test_running_the_demo_again_keeps_what_it_has(runner, settings):
    import time

    first = runner.invoke(["demo", "--no-serve"])
    assert first.exit_code == 0, first.output
    time.sleep(2.1)  # zip times have a 2-second step: the books are written anew at another time
    again = runner.invoke(["demo", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert "0 new, 5 already there" in again.output
    with dbmod.catalog_session(settings.db_path) as db:
        assert db.execute("SELECT count(*) FROM books").fetchone()[0] == 5
