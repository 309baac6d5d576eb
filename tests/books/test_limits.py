"""What one book may cost to import: a chapter's size, its nesting, the text kept for search, the
number of chapters and zip entries, the cover's pixels. Each hostile file is made here, just past the
limit it tests; the import finishes in moments and says why a book was refused or what was left out."""
from __future__ import annotations

import io
import time

from PIL import Image

from appliance.books import epub
from appliance.books.container import MAX_CHAPTER_BYTES, MAX_ZIP_ENTRIES
from appliance.books.covers import make_thumbnail
from appliance.books.demo import write_epub
from appliance.books.epub import MAX_CHAPTERS, read_epub
from appliance.books.htmltext import MAX_NESTING, nesting_depth
from appliance.books.importer import Importer
from appliance.storage import catalog
from appliance.storage import db as dbmod
from tests.support import hostile


def import_quickly(settings, *paths):
    """Import without the search index (what these tests look at is in the catalog); returns
    (report, seconds)."""
    db = dbmod.connect(settings.db_path)
    try:
        started = time.monotonic()
        report = Importer(settings, db, None).import_paths(list(paths))
        return report, time.monotonic() - started
    finally:
        db.close()


def reasons(report) -> list[str]:
    return [str(reason) for _name, reason in report.quarantined]


def warnings(report) -> list[str]:
    return [str(warning) for _name, warning in report.warnings]


def test_a_chapter_over_the_limit_is_quarantined_before_it_is_read(settings, tmp_path):
    path = hostile.big_chapter_epub(tmp_path / "big.epub", MAX_CHAPTER_BYTES + 100_000)
    report, seconds = import_quickly(settings, path)
    assert report.imported == []
    assert reasons(report) == ["OEBPS/text/chapter002.xhtml is too large (4.1 MB; the limit is 4.0 MB)"]
    assert seconds < 5


def test_a_large_book_keeps_its_text_for_search_up_to_the_limit(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(epub, "MAX_TEXT_CHARS", 100_000)  # the real limit is 4,000,000: the same, smaller
    path = write_epub(tmp_path / "long.epub", hostile.plain_book("Collected works", [
        (f"Volume {n}", [f"volume{n} " + hostile.random_text(1_000) for _ in range(30)]) for n in range(8)]))
    report, _seconds = import_quickly(settings, path)
    assert len(report.imported) == 1 and report.quarantined == []
    assert any("characters of text; only the first 100,000 are kept for search" in w for w in warnings(report))
    db = dbmod.connect(settings.db_path)
    book = catalog.get_book(db, report.imported[0][1])
    assert len(book["chapters"]) == 8  # every chapter can be read
    texts = [catalog.chapter_text(db, book["id"], c["position"]) or "" for c in book["chapters"]]
    assert 90_000 < sum(len(t) for t in texts) <= 100_000
    assert "volume0" in texts[0] and texts[-1] == ""


def test_a_chapter_nested_too_deep_is_imported_with_a_warning(settings, tmp_path):
    path = hostile.deep_epub(tmp_path / "deep.epub", 60_000)
    report, seconds = import_quickly(settings, path)
    assert len(report.imported) == 1
    assert f"OEBPS/text/chapter002.xhtml nests its elements more than {MAX_NESTING} deep; it is shown as plain text" \
        in warnings(report)
    assert seconds < 5


def test_nesting_is_measured_as_an_html_parser_sees_it():
    assert nesting_depth("<div><p>a<p>b<br>c<img src=x><a id=1/>d<a id=2/></p></div>") == 3
    assert nesting_depth("<div>" * 300 + "</div>" * 300) == MAX_NESTING + 1  # counting stops there
    assert nesting_depth("<span/>" * 300) == MAX_NESTING + 1  # <span/> opens a span in HTML
    assert nesting_depth("<svg>" + "<rect/>" * 300 + "</svg><w:x/><w:x/>") == 1
    assert nesting_depth("<!--" + "<div>" * 300 + "-->" + "</b>" * 300 + "<p>") == 1


def test_a_book_with_too_many_chapters_is_quarantined(settings, tmp_path):
    path = hostile.many_chapters_epub(tmp_path / "chapters.epub", MAX_CHAPTERS + 1)
    report, seconds = import_quickly(settings, path)
    assert reasons(report) == [f"the book has {MAX_CHAPTERS + 1} chapters and pages, more than the "
                               f"{MAX_CHAPTERS} one book may have"]
    assert seconds < 5


def test_a_zip_of_too_many_entries_is_quarantined(settings, tmp_path):
    path = hostile.many_entries_epub(tmp_path / "entries.epub", MAX_ZIP_ENTRIES)
    report, seconds = import_quickly(settings, path)
    [reason] = reasons(report)
    assert reason.startswith(f"the zip archive holds {MAX_ZIP_ENTRIES + 8} entries, more than the {MAX_ZIP_ENTRIES} ")
    assert seconds < 5


def test_a_cover_of_too_many_pixels_is_left_out_undecoded(settings, tmp_path):
    path = hostile.big_cover_epub(tmp_path / "cover.epub", (7000, 5670))  # 39.7 megapixels in a few KB
    started = time.monotonic()
    record = read_epub(path)
    assert time.monotonic() - started < 2  # decoding it took seconds and 500 MB
    assert record.cover is None and record.thumbnail is None
    assert "the cover OEBPS/images/cover.png is 7000 by 5670 pixels, too many to show; it is left out" \
        in [str(w) for w in record.warnings]
    report, _seconds = import_quickly(settings, path)
    assert len(report.imported) == 1


def test_a_large_jpeg_cover_is_shrunk_while_it_is_decoded():
    out = io.BytesIO()
    Image.new("RGB", (4200, 4200), (20, 60, 90)).save(out, "JPEG", quality=50)
    assert make_thumbnail(out.getvalue()) is not None  # decoded at an eighth of its size
    assert make_thumbnail(hostile.big_cover_png((4200, 4200))) is None  # a PNG is decoded whole: 17.6 megapixels
