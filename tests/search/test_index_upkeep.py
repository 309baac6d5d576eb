"""The search index kept in step: rebuilds in parts and in processes, updates that wait, compaction."""
from __future__ import annotations

import os
import random
import threading
import time
from functools import partial

import pytest

from appliance.jobs import child as childjobs
from appliance.search import index as search_module
from appliance.search import rebuilds, updates, wordpairs
from appliance.search import upkeep as indexing
from appliance.search.documents import IndexDoc
from appliance.search.errors import IndexBusy
from appliance.search.index import SearchIndex
from appliance.storage import db as dbmod
from appliance.web.context import services
from tests.conftest import import_files


def _doc(book_id: int, text: str, *, title: str = "", language: str = "vi", subjects=()) -> IndexDoc:
    return IndexDoc(book_id, title or f"Sách {book_id}", (f"Tác giả {book_id % 3}",), tuple(subjects), language,
                    "", ((1, "Một", text),))


def _random_books(first: int, stop: int) -> list[IndexDoc]:
    """Books ``first`` to ``stop - 1`` of a made-up catalog, the same in any process."""
    vocabulary = [f"từ{n}" for n in range(2000)]
    books = []
    for n in range(first, stop):
        rng = random.Random(n)
        books.append(_doc(n, " ".join(rng.choice(vocabulary) for _ in range(rng.randint(20, 200))),
                          language=rng.choice(["vi", "en", "fr"]), subjects=(rng.choice(["Truyện", "Sử"]),)))
    return books


def test_an_index_built_in_parts_by_processes_answers_like_one_built_whole(tmp_path):
    """Each part is indexed by a process of its own into a segment of its own; totals, facets,
    ranking and scores are those of the index built in one piece."""
    phrase = '"' + " ".join(_random_books(7, 8)[0].chapters[0][2].split()[3:5]) + '"'
    queries = ("từ5", "từ17 từ2", phrase, "tac gia 1 -từ3", "sach 12", "từ40 từ41 từ42")
    answers = []
    for name, how in (("whole", dict(docs=_random_books(0, 240))),
                      ("parts", dict(parts=[partial(_random_books, 0, 100), partial(_random_books, 100, 170),
                                            partial(_random_books, 170, 240)]))):
        index = SearchIndex(tmp_path / name)
        try:
            assert index.rebuild(**how) == 240
            assert index.segment_count() == (3 if name == "parts" else 1)
            assert index.book_ids() == set(range(240))
            answers.append([(page.total, page.languages, page.subjects,
                             [(h.book_id, round(h.score, 4)) for h in page.hits])
                            for page in (index.search(q, pagelen=100) for q in queries)]
                           + [index.search("từ7", language="fr").total])
        finally:
            index.close()
    assert answers[0] == answers[1]
    assert all(total for total, *_ in answers[0][:-1])


def test_the_field_lengths_a_writer_keeps_are_those_of_the_segment(tmp_path):
    """A segment's postings are written with each document's field lengths read once into lists
    (``_KeptLengths``); they must be what the segment's own reader says, document by document."""
    from whoosh import index as whoosh_index

    index = SearchIndex(tmp_path / "index")
    try:
        index.rebuild(_random_books(0, 60))
        ix = whoosh_index.open_dir(str(tmp_path / "index" / index._current_gen()))
        segment_reader = ix.reader()
        reader = segment_reader._perdoc
        kept = search_module._KeptLengths(reader)
        fields = ("all", "title", "authors", "pairs", "subject_words")
        lengths = {f: [reader.doc_field_length(n, f) for n in range(60)] for f in fields}
        assert all(len(set(values)) > 1 or f in ("title", "authors", "subject_words") for f, values in lengths.items())
        assert all(all(values) for values in lengths.values())
        assert {f: [kept.doc_field_length(n, f) for n in range(60)] for f in fields} == lengths
        assert kept.doc_count_all() == 60  # anything else is the reader's own
        segment_reader.close()
        ix.close()
    finally:
        index.close()


def test_a_rebuild_in_parts_that_fails_leaves_the_old_index(tmp_path):
    index = SearchIndex(tmp_path / "index")
    try:
        index.rebuild(_random_books(0, 20))
        with pytest.raises(ValueError):
            index.rebuild(parts=[partial(_random_books, 0, 10), partial(_no_books, "the catalog went away")])
        assert index.book_ids() == set(range(20)) and index.segment_count() == 1
        assert [p.name for p in (tmp_path / "index").iterdir() if p.name.startswith("gen-")] == ["gen-000001"]
    finally:
        index.close()


def _no_books(why: str):
    raise ValueError(why)


def _killed_worker():
    os.kill(os.getpid(), 9)  # as the kernel's out-of-memory killer would
    return []


def test_a_rebuild_whose_worker_is_killed_is_done_again_in_one_process(settings, make_epub, monkeypatch):
    files = [make_epub(title=f"Sách {n}", chapters=[("Một", [f"Có chữ{n} ở bản."])]) for n in range(6)]
    import_files(settings, files)
    monkeypatch.setattr(indexing, "PARALLEL_BOOKS", 2)
    monkeypatch.setattr(indexing, "parts_of", lambda db, count: [_killed_worker, partial(_random_books, 0, 3)])
    db = dbmod.connect(settings.db_path)
    index = SearchIndex(settings.index_dir)
    try:
        assert indexing.rebuild(db, index, workers=2) == 6
        assert index.segment_count() == 1
        assert [index.search(f"chữ{n}").total for n in range(6)] == [1] * 6
        assert index.search("từ1").total == 0  # nothing of the killed attempt's other part
    finally:
        index.close()
        db.close()


def test_books_that_arrive_while_another_process_rebuilds_the_index_are_in_the_new_one(settings, make_epub,
                                                                                     monkeypatch):
    """A rebuild (`library reindex`, the librarian's button) reads the catalog, writes a new index
    and switches to it. A bundle or an import arriving meanwhile is caught up by the server only
    after the switch: caught up into the old index and cleared from the queue, it was lost."""
    from appliance.books.importer import Importer
    from appliance.search.errors import IndexBusy

    import_files(settings, [make_epub(title="Sách cũ", chapters=[("Một", ["Chữ trâu ở bản."])])])
    monkeypatch.setattr(rebuilds, "WRITE_TIMEOUT", 0.3)  # how long an update waits for the rebuild
    catalog_read, carry_on = threading.Event(), threading.Event()
    real_all_docs = indexing.all_docs

    def read_then_wait(db):
        docs = list(real_all_docs(db))
        catalog_read.set()
        assert carry_on.wait(30)
        yield from docs

    monkeypatch.setattr(indexing, "all_docs", read_then_wait)

    def reindex():  # as `library reindex` would, in its own process
        db = dbmod.connect(settings.db_path)
        index = SearchIndex(settings.index_dir)
        try:
            indexing.rebuild(db, index)
        finally:
            index.close()
            db.close()

    rebuilding = threading.Thread(target=reindex)
    rebuilding.start()
    db = dbmod.connect(settings.db_path)
    server = SearchIndex(settings.index_dir)  # the server's own, kept current every few seconds
    try:
        assert catalog_read.wait(30)
        fresh = make_epub(title="Sách mới", chapters=[("Một", ["Chữ ngựa ở bản."])])
        assert Importer(settings, db, None).import_paths([fresh]).imported
        with pytest.raises(IndexBusy):
            indexing.catch_up(db, server)
        with pytest.raises(IndexBusy):
            indexing.compact(db, server)
        assert server.search("ngua").total == 0  # the old index, without it yet
        carry_on.set()
        rebuilding.join(30)
        assert not rebuilding.is_alive()
        assert server.search("trau").total == 1 and server.search("ngua").total == 0
        assert indexing.catch_up(db, server) == 1  # the server's next turn
        assert server.search("ngua").total == 1
        assert indexing.ensure_index(db, server) == "current"
    finally:
        carry_on.set()
        server.close()
        db.close()


def test_an_update_waits_for_another_processs_update_instead_of_giving_up(settings, make_epub):
    """The server indexing a release while `library import` wants to index its books: the import
    waits for it (as for the index's writer) rather than leaving its books to the server."""
    from appliance.books.importer import Importer

    import_files(settings, [make_epub(title="Sách cũ", chapters=[("Một", ["Chữ trâu ở bản."])])])
    server, held = SearchIndex(settings.index_dir), threading.Event()

    def server_updating() -> None:
        with server.rebuild_held_off():
            held.set()
            time.sleep(0.5)

    updating = threading.Thread(target=server_updating)
    updating.start()
    db = dbmod.connect(settings.db_path)
    index = SearchIndex(settings.index_dir)
    try:
        assert held.wait(10)
        report = Importer(settings, db, index).import_paths([make_epub(title="Sách mới",
                                                                       chapters=[("Một", ["Chữ ngựa ở bản."])])])
        assert report.imported and not report.index_busy
        assert index.search("ngua").total == 1
    finally:
        updating.join()
        index.close()
        server.close()
        db.close()


def test_what_an_unfinished_rebuild_left_is_removed_but_not_while_one_runs(settings, make_epub):
    import_files(settings, [make_epub(title="Sách cũ", chapters=[("Một", ["Chữ trâu ở bản."])])])
    (current,) = [p.name for p in settings.index_dir.glob("gen-*")]
    half_made = settings.index_dir / "gen-000007"
    half_made.mkdir()
    (half_made / "_MAIN_1.toc").write_bytes(b"\0" * 1000)
    db = dbmod.connect(settings.db_path)
    index, rebuilding = SearchIndex(settings.index_dir), SearchIndex(settings.index_dir)
    try:
        with rebuilding.rebuild_held_off():  # another process's rebuild: its generation is being made
            assert indexing.ensure_index(db, index) == "current" and half_made.is_dir()
        assert indexing.ensure_index(db, index) == "current"
        assert [p.name for p in settings.index_dir.glob("gen-*")] == [current]
        assert index.search("trau").total == 1
    finally:
        index.close()
        rebuilding.close()
        db.close()


def test_a_rebuilds_parts_are_runs_of_books_with_about_as_much_text(settings, make_epub):
    """``parts_of`` cuts the visible books, in id order, into runs of about an even share of the
    text left: one long book is a part of its own, the short ones after it share the others."""
    from appliance.storage import catalog

    rng = random.Random(3)

    def text(words: int) -> str:
        return " ".join("".join(rng.choice("abcdeghiklmnoprstuvy") for _ in range(rng.randint(2, 7)))
                        for _ in range(words))

    files = [make_epub(title="Dài", chapters=[("Một", [text(30_000)])])]
    files += [make_epub(title=f"Ngắn {n}", chapters=[("Một", [text(3_000)])]) for n in range(8)]
    import_files(settings, files)
    db = dbmod.connect(settings.db_path)
    try:
        catalog.update_book(db, 5, hidden=1)
        parts = indexing.parts_of(db, 2)
        assert [[doc.book_id for doc in part()] for part in parts] == [[1], [2, 3, 4, 6, 7, 8, 9]]
        assert [[doc.book_id for doc in part()] for part in indexing.parts_of(db, 4)] == [[1], [2, 3, 4], [6, 7], [8, 9]]
    finally:
        db.close()


def test_posting_lists_read_whole_are_those_whoosh_reads_one_posting_at_a_time(tmp_path):
    """Each term's documents and weights as the search reads them (a list in one read of the
    segment file, ``_w3_postings``) are those Whoosh's own matcher gives one by one: lists of several
    blocks of 128, with weights of 1 (word pairs), one weight for a whole block (a word twice in
    every book) and one each, and a removed book's postings still there for the reader to mask."""
    rng = random.Random(3)
    vocabulary = [f"từ{n}" for n in range(300)]
    docs = [_doc(n, " ".join([rng.choice(vocabulary) for _ in range(30)] + ["mây"] * rng.randint(1, 3)
                             + ["khèn", "núi", "khèn"]))
            for n in range(400)]
    index = SearchIndex(tmp_path / "index")
    try:
        assert index.rebuild(docs) == 400
        index.remove_books([5])
        leaves = index._get_searcher().reader().leaf_readers()
        assert len(leaves) == 1
        read = {}
        for leaf, _ in leaves:
            for field in ("all", "pairs", "title", "language"):
                for term, _ in leaf.iter_field(field):
                    text = term.decode("utf-8")
                    ids, weights = search_module._leaf_postings(leaf, field, text)
                    got = list(zip(ids.tolist(), weights.tolist(), strict=True))
                    matcher = leaf._terms.matcher(field, term, leaf.schema[field].format)  # removed books too
                    expected = []
                    while matcher.is_active():
                        expected.append((matcher.id(), matcher.weight()))
                        matcher.next()
                    if isinstance(matcher, search_module.W3LeafMatcher):
                        assert got == expected, (field, text)
                    else:  # a handful kept in the term table, read through Whoosh's filter of removed books
                        assert got == [p for p in expected if not leaf.is_deleted(p[0])], (field, text)
                    read[field, text] = len(got)
        assert read["all", "khen"] == read["all", "may"] == 400  # four blocks each, book 5 among them
        assert read["pairs", wordpairs.pair_term("khen", "nui")] == 400
        assert index.search("khen").total == 399
    finally:
        index.close()


@pytest.fixture
def index(tmp_path):
    """An empty index in the test's folder, closed at the end."""
    index = SearchIndex(tmp_path / "index")
    yield index
    index.close()


def _answers(index, queries) -> list[tuple]:
    out = []
    for q in queries:
        page = index.search(q, pagelen=300)
        out.append((q, page.total, sorted(h.book_id for h in page.hits), dict(page.languages), dict(page.subjects)))
    return out


def test_the_small_segments_are_indexed_again_into_one_and_nothing_is_lost(index):
    """A catalog indexed whole, then five small updates (one replacing a book of the large
    segment, one removing a book of a small one): compacting leaves the large segment and one new
    one, and every search finds the same books, the replaced book as it is now and the removed one
    nowhere."""
    current = {doc.book_id: doc for doc in _random_books(0, 100)}
    index.rebuild(list(current.values()))
    for k in range(5):
        docs = _random_books(100 + 10 * k, 110 + 10 * k)
        if k == 4:
            docs.append(_doc(3, "từ0 chữmới"))
        current.update((doc.book_id, doc) for doc in docs)
        index.update(docs)
    index.update([102])
    del current[102]
    assert index.segment_count() == 6 and index.small_segments() == 5
    phrase = '"' + " ".join(current[7].chapters[0][2].split()[3:5]) + '"'
    queries = ("từ5", "từ17 từ2", phrase, "tac gia 1 -từ3", "sach 102", "sach 3", "chữmới", "từ40 từ41")
    before = _answers(index, queries)
    asked: list[list[int]] = []

    def changes_for(ids):
        asked.append(list(ids))
        return (current.get(book_id, book_id) for book_id in ids)

    assert index.compact(changes_for) == 5
    # The books the small segments hold: book 3's new version among them, 102's removed one not.
    assert sorted(asked[0]) == [3, *(n for n in range(100, 150) if n != 102)]
    assert index.segment_count() == 2 and index.small_segments() == 0
    assert _answers(index, queries) == before
    assert index.book_ids() == set(current)
    assert index.search("chữmới").total == 1 and 102 not in {h.book_id for h in index.search("sach 102").hits}
    assert index.compact(changes_for) == 0 and len(asked) == 1  # nothing small left to do


def test_fewer_small_segments_than_the_threshold_are_left_as_they_are(index):
    index.rebuild(_random_books(0, 100))
    for k in range(updates.COMPACT_SMALL_SEGMENTS - 1):
        index.update(_random_books(100 + k, 101 + k))
    assert index.compact(lambda ids: pytest.fail("nothing should be indexed again")) == 0
    assert index.segment_count() == updates.COMPACT_SMALL_SEGMENTS


def _one_large_import_and_four_small(settings, make_epub) -> None:
    """Books 0-7 in one import (a segment), then books 8-11 one import each (four small ones)."""
    def book(n: int):
        return make_epub(title=f"Sách {n}", chapters=[("Một", [f"Có chữ{n} ở bản."])])

    import_files(settings, [book(n) for n in range(8)])
    for n in range(8, 12):
        import_files(settings, [book(n)])


def test_the_server_compacts_the_index_only_when_readers_leave_it_idle(settings, make_epub, app, client):
    """Four small imports after a large one: while a phone keeps asking for pages nothing is
    merged; once nobody has asked anything for the idle time, the keeper indexes the small
    segments' books again into one, and every book is still found."""
    import time

    from appliance.jobs.registry import start_index_keeper

    _one_large_import_and_four_small(settings, make_epub)
    index = services(app).library.index
    assert index.segment_count() == 5 and index.small_segments() == 4
    stop = start_index_keeper(services(app).library, interval=0.05, compact_idle=0.5)
    try:
        busy_until = time.monotonic() + 2.0
        while time.monotonic() < busy_until:
            assert client.get("/").status_code == 200
            time.sleep(0.05)
        assert index.segment_count() == 5
        deadline = time.monotonic() + 30
        while index.segment_count() != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index.segment_count() == 2
    finally:
        stop.set()
    assert [index.search(f"chữ{n}").total for n in range(12)] == [1] * 12
    assert client.get("/search?q=chu11").get_data(as_text=True).count("Sách 11") >= 1


def test_many_books_waiting_are_indexed_by_a_process_of_its_own(settings, make_epub, app, monkeypatch):
    """A release of many books arrives (installed by the sync agent's process, which leaves them
    in the index's queue): the server does not index them in its own process, where they would take
    the interpreter from the readers for seconds, but in one of its own (appliance.jobs.child)."""

    from appliance.books.importer import Importer
    from appliance.jobs import registry as background
    from appliance.jobs.registry import start_index_keeper

    import_files(settings, [make_epub(title="Sách cũ", chapters=[("Một", ["Chữ trâu ở bản."])])])
    db = dbmod.connect(settings.db_path)
    try:
        count = background.CHILD_CATCH_UP_BOOKS
        books = [make_epub(title=f"Truyện {n}", chapters=[("Một", [f"Có chữ{n} ở bản."])]) for n in range(count)]
        assert len(Importer(settings, db, None).import_paths(books).imported) == count
    finally:
        db.close()

    catch_up = indexing.catch_up

    def only_nothing_here(db, *args, **kwargs):
        assert db.execute("SELECT count(*) FROM index_queue").fetchone()[0] == 0, "indexed in the server's process"
        return catch_up(db, *args, **kwargs)

    monkeypatch.setattr(indexing, "catch_up", only_nothing_here)
    index = services(app).library.index
    stop = start_index_keeper(services(app).library, interval=0.05)
    try:
        deadline = time.monotonic() + 30
        while (index.search(f"chữ{count - 1}").total == 0 or services(app).library.index_state != "current") \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert [index.search(f"chữ{n}").total for n in range(count)] == [1] * count
    assert services(app).library.index_state == "current"


@pytest.mark.parametrize("trouble, tries", [(OSError(28, "No space left on device"), "once"),
                                            (IndexBusy("an import is writing"), "again")])
def test_a_compaction_that_fails_leaves_the_index_serving_and_is_not_tried_again_at_once(
        settings, make_epub, app, monkeypatch, trouble, tries):
    """A failure is tried again an hour later; an index another process is writing to, after the
    next idle spell (none here)."""
    import time

    from appliance.jobs.registry import start_index_keeper

    _one_large_import_and_four_small(settings, make_epub)
    tried = []

    def failing(settings, job):
        assert job == "compact-index"
        tried.append(time.monotonic())
        raise trouble

    monkeypatch.setattr(childjobs, "run", failing)
    state = services(app).library
    stop = start_index_keeper(services(app).library, interval=0.02, compact_idle=0)
    try:
        deadline = time.monotonic() + 10
        while not tried and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # some 25 rounds of the keeper
    finally:
        stop.set()
    assert (len(tried) == 1 if tries == "once" else len(tried) > 5) and state.index_state == "current"
    assert state.index.segment_count() == 5
    assert [state.index.search(f"chữ{n}").total for n in range(12)] == [1] * 12


def test_the_index_jobs_processes_say_busy_and_failed_apart(settings, make_epub):
    """The server's compaction (and the librarian's rebuild) run in a process of their own, which
    says by its end whether the index was busy (another process rebuilding it: tried after the
    next idle spell) or the job failed (tried an hour later)."""
    _one_large_import_and_four_small(settings, make_epub)
    other = SearchIndex(settings.index_dir)  # `library reindex`, say
    try:
        with other.rebuild_held_off():
            with pytest.raises(IndexBusy):
                childjobs.run(settings, "compact-index")
    finally:
        other.close()
    lock = settings.index_dir / rebuilds.REBUILD_LOCK
    lock.unlink()
    lock.mkdir()
    with pytest.raises(childjobs.JobFailed):
        childjobs.run(settings, "compact-index")
    lock.rmdir()
    index = SearchIndex(settings.index_dir)
    try:
        assert index.segment_count() == 5
        childjobs.run(settings, "compact-index")
        assert index.segment_count() == 2
        assert [index.search(f"chữ{n}").total for n in range(12)] == [1] * 12
    finally:
        index.close()


def test_a_compaction_takes_the_smallest_segments_up_to_a_number_of_books(index, monkeypatch):
    index.rebuild(_random_books(0, 100))
    for k, size in enumerate((12, 10, 11, 10, 10)):
        index.update(_random_books(100 + 20 * k, 100 + 20 * k + size))
    monkeypatch.setattr(updates, "COMPACT_MAX_BOOKS", 30)  # 10 + 10 + 10: three, not enough
    assert index.small_segments() == 3
    assert index.compact(lambda ids: pytest.fail("nothing should be indexed again")) == 0
    monkeypatch.setattr(updates, "COMPACT_MAX_BOOKS", 41)  # 10 + 10 + 10 + 11
    assert index.compact(lambda ids: (doc for doc in _random_books(100, 200) if doc.book_id in ids)) == 4
    assert index.segment_count() == 3  # the large one, the one of 12 books, the new one of 41
    assert index.book_ids() == set(range(100)) | {100 + 20 * k + n for k, size in enumerate((12, 10, 11, 10, 10))
                                                  for n in range(size)}
