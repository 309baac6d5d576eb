"""Importing the real corpus: every readable book lands, defects become warnings, broken files are quarantined."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.settings import Settings
from appliance.storage import catalog
from appliance.storage import db as dbmod
from tests.conftest import SHARED, import_files

MISSING_MEDIA = ("cc-shared-culture", "kusamakura-japanese-vertical-writing", "kusamakura-preview",
                 "kusamakura-preview-embedded", "moby-dick-mo")


@pytest.fixture(scope="module")
def corpus_library(tmp_path_factory):
    corpus = SHARED / "corpus"
    if not corpus.is_dir():
        pytest.skip("../shared/corpus is not present")
    settings = Settings(home=tmp_path_factory.mktemp("corpus") / "home", disk_reserve_mb=0)
    readable = sorted((corpus / "epub3-samples").glob("*.epub")) + sorted((corpus / "vi").glob("*.epub"))
    malformed = sorted(p for p in (corpus / "malformed").iterdir() if p.is_file())
    report = import_files(settings, [corpus / "epub3-samples", corpus / "vi", corpus / "malformed"])
    db = dbmod.connect(settings.db_path)
    yield settings, db, report, readable, malformed
    db.close()


def by_file(report) -> dict[str, str]:
    return {Path(name).name: kind for kind, rows in (("imported", report.imported),
                                                        ("quarantined", report.quarantined),
                                                        ("duplicate", report.duplicates))
            for name, *_ in rows}


def test_every_readable_book_is_in_the_catalog(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    outcome = by_file(report)
    assert len(readable) == 100
    not_in = [p.name for p in readable if outcome.get(p.name) not in ("imported", "duplicate")]
    assert not_in == []
    assert catalog.count_books(db) >= 100 - len([p for p in readable if outcome.get(p.name) == "duplicate"])


def test_missing_media_gives_warnings_not_quarantine(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    outcome = by_file(report)
    warned = {Path(name).name for name, _ in report.warnings}
    for stem in MISSING_MEDIA:
        assert outcome[f"{stem}.epub"] in ("imported", "duplicate"), stem
    assert {f"{stem}.epub" for stem in MISSING_MEDIA if outcome[f"{stem}.epub"] == "imported"} <= warned


def test_malformed_files_are_quarantined_with_reasons_or_imported(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    outcome = by_file(report)
    assert {p.name for p in malformed} <= set(outcome)
    reasons = {Path(n).name: str(r) for n, r in report.quarantined}
    for name, reason in reasons.items():
        assert reason and "\n" not in reason and "Traceback" not in reason, (name, reason)
        assert len(reason) < 300
    # Files that are not zips at all cannot be books.
    assert "ocf-zip-unreadable-empty-fatal.epub" in reasons
    assert "ocf-zip-unreadable-image-with-epub-extension-fatal.epub" in reasons
    # The catalog remembers each quarantined file and keeps a copy aside for the librarian.
    rows = catalog.quarantined(db)
    assert {r["file_name"] for r in rows} >= set(reasons)
    assert len(list(settings.quarantine_dir.iterdir())) >= len(set(reasons))


def test_vietnamese_books_labelled_english_are_vietnamese(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    rows = db.execute("SELECT file_name, language FROM books").fetchall()
    vi_files = {p.name for p in readable if p.parent.name == "vi"}
    languages = {name: lang for name, lang in rows if name in vi_files}
    assert len(languages) >= 50
    wrong = {name: lang for name, lang in languages.items() if lang != "vi"}
    assert wrong == {}


def test_scripts_of_the_samples_are_recognised(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    langs = dict(db.execute("SELECT file_name, language FROM books").fetchall())
    assert langs["regime-anticancer-arabic.epub"] == "ar"
    assert langs["kusamakura-japanese-vertical-writing.epub"] == "ja"
    assert langs["israelsailing.epub"] == "he"
    assert langs["sous-le-vent.epub"] == "fr"
    assert langs["moby-dick.epub"] == "en"


def test_books_have_titles_chapters_text_and_small_thumbnails(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    moby = db.execute("SELECT id FROM books WHERE file_name = 'moby-dick.epub'").fetchone()[0]
    book = catalog.get_book(db, moby)
    assert book["title"] == "Moby-Dick"
    assert "Herman Melville" in [a["name"] if isinstance(a, dict) else a for a in book["authors"]]
    chapters = db.execute("SELECT COUNT(*) FROM chapters WHERE book_id = ?", [moby]).fetchone()[0]
    assert chapters > 100
    text = catalog.chapter_text(db, moby, 5)
    assert text and len(text) > 200
    thumbs = [row[0] for row in db.execute("SELECT thumb_sha256 FROM books WHERE thumb_sha256 IS NOT NULL")]
    assert len(thumbs) > 20
    from appliance.storage.blobs import BlobStore

    store = BlobStore(settings.blobs_dir)
    for sha in thumbs:
        with store.open(sha) as f:
            assert len(f.read()) <= 20 * 1024


def test_reimport_is_a_no_op(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    before = catalog.count_books(db)
    again = import_files(settings, [readable[0].parent])
    assert again.imported == []
    assert len(again.duplicates) == len(list(readable[0].parent.glob("*.epub")))
    assert catalog.count_books(db) == before


def test_catalog_is_sound(corpus_library):
    settings, db, report, readable, malformed = corpus_library
    conn = sqlite3.connect(settings.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
