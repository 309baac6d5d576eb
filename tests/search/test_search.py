"""Search as readers use it: folded accents, Arabic spelling variants, no stop words, ranking, filters, recovery."""
from __future__ import annotations

import math
import os
import random
import shutil
import threading
import time
import urllib.parse
from functools import partial

import pytest

from appliance.jobs import child as childjobs
from appliance.search import index as search_module
from appliance.search import rebuilds, updates, wordpairs
from appliance.search import upkeep as indexing
from appliance.search.chaptermarks import chapter_marks, chapters_with_any
from appliance.search.documents import SEP, IndexDoc, index_documents
from appliance.search.errors import IndexBusy
from appliance.search.hits import SNIPPET_FIRST_BYTES, SNIPPET_HEAD_BYTES
from appliance.search.index import SearchIndex
from appliance.storage import db as dbmod
from appliance.textfold import clean, fold, tokens
from appliance.web.context import services
from tests.conftest import import_files


@pytest.fixture
def library(settings, make_epub):
    files = [
        make_epub(title="Đường về bản", authors=["Hà Thị Mai"], subjects=["Tiểu thuyết"],
                  chapters=[("Phần một", ["Tiếng khèn vọng lại từ phía đồi."]),
                            ("Phần hai", ["Mẹ đứng chờ ở đầu ngõ, mái tóc đã bạc trắng như mây núi."])]),
        make_epub(title="Thư viện trên núi", authors=["Lò Văn Sáng"], subjects=["Thiếu nhi"],
                  chapters=[("Chương một", ["Con đường lên bản quanh co giữa những nương ngô xanh."])]),
        make_epub(title="Chuyện cái cây", authors=["Nguyễn An"], subjects=["Thiếu nhi"],
                  chapters=[("Một", ["Cây ăn quả to may mắn được tưới nước mỗi sáng."])]),
        make_epub(title="المكتبة الصغيرة", authors=["أحمد"], language="ar",
                  chapters=[("الفصل الأول", ["ذهبَ الأطفالُ إلى المَكْتَبَةِ لِيقرؤوا القصص."])]),
        make_epub(title="Growing Rice", authors=["Extension Team"], language="en",
                  chapters=[("Terraces", ["Mai said the library on the hill keeps seeds too."])]),
        make_epub(title="Mai's Garden", authors=["Someone Else"], language="en",
                  chapters=[("One", ["Water the beans."])]),
    ]
    import_files(settings, files)
    return settings


def api(client, **params):
    answer = client.get("/api/search?" + urllib.parse.urlencode(params))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def titles(data) -> list[str]:
    return [b["title"] for b in data["books"]]


def test_fold_vietnamese_arabic_and_digits():
    assert fold("Thư Viện") == "thu vien"
    assert fold("ĐƯỜNG") == "duong"
    assert fold("élève ﬁn") == "eleve fin"
    assert fold("أحمد") == fold("احمد") == fold("إحمد")
    assert fold("المَكْتَبَةِ") == fold("المكتبه")
    assert fold("١٩٨٤") == "1984"
    assert fold("thư\u00adviện") == "thuvien"
    assert fold("Thư viện") == fold("Thư viện")  # decomposed input (NFD) folds the same
    assert tokens("an may to") == ["an", "may", "to"]


@pytest.mark.parametrize("query, expected", [
    ("thu vien", "Thư viện trên núi"),
    ("duong ve ban", "Đường về bản"),
    ("THU VIEN TREN NUI", "Thư viện trên núi"),
    ("ha thi mai", "Đường về bản"),
    ("lo van sang", "Thư viện trên núi"),
    ('"nuong ngo xanh"', "Thư viện trên núi"),
    ("nương ngô", "Thư viện trên núi"),
])
def test_unaccented_and_accented_queries(client, library, query, expected):
    assert titles(api(client, q=query))[0] == expected


def test_vietnamese_syllables_that_are_english_stop_words_still_count(client, library):
    data = api(client, q="an qua to may")
    assert titles(data) == ["Chuyện cái cây"]
    assert data["books"][0]["chapter_title"] == "Một"


def test_arabic_without_tashkeel_or_hamza_finds_the_book(client, library):
    assert titles(api(client, q="المكتبه"))[0] == "المكتبة الصغيرة"
    assert titles(api(client, q="احمد"))[0] == "المكتبة الصغيرة"
    assert titles(api(client, q="ذهب الاطفال"))[0] == "المكتبة الصغيرة"


def test_title_and_author_hits_rank_above_body_hits(client, library):
    data = api(client, q="mai")
    found = titles(data)
    # "Mai" is an author of one book, a title word of another, and only a body word of "Growing Rice".
    assert found.index("Growing Rice") == len(found) - 1
    assert set(found[:2]) == {"Đường về bản", "Mai's Garden"}


def test_snippet_names_the_chapter_and_marks_words(client, library):
    data = api(client, q="toc bac trang")
    hit = data["books"][0]
    assert hit["title"] == "Đường về bản"
    assert hit["chapter_title"] == "Phần hai"
    assert "<mark>" in hit["snippet"] and "tóc" in hit["snippet"]


def test_filters_and_pagination(client, library):
    data = api(client, q="thieu nhi")
    assert set(titles(data)) == {"Thư viện trên núi", "Chuyện cái cây"}
    assert titles(api(client, q="thieu nhi", subject="Thiếu nhi", lang="vi"))
    assert api(client, q="mai", lang="en")["total"] == 2
    assert api(client, q="mai", lang="ar")["total"] == 0


def test_pages_of_results(settings, make_epub, client):
    import_files(settings, [make_epub(title=f"Truyện cổ tích số {n}", authors=["Kể Chuyện"]) for n in range(25)])
    first, second = api(client, q="truyen co tich", page=1), api(client, q="truyen co tich", page=2)
    assert first["total"] == second["total"] == 25
    assert first["pages"] == 2
    assert len(first["books"]) == 20 and len(second["books"]) == 5
    assert not {b["id"] for b in first["books"]} & {b["id"] for b in second["books"]}
    assert api(client, q="truyen co tich", page=3)["books"] == []


def test_html_search_page_has_filters_and_handles_nothing_found(client, library):
    html = client.get("/search?q=thu+vien").get_data(as_text=True)
    assert "Thư viện trên núi" in html
    empty = client.get("/search?q=zzzqqq")
    assert empty.status_code == 200


def test_index_rebuilt_when_missing_corrupt_or_left_locked(library):
    db = dbmod.connect(library.db_path)
    index = SearchIndex(library.index_dir)
    try:
        assert index.search("thu vien").total == 1
        index.close()
        # Corrupt every file of the live generation.
        for root, _dirs, files in os.walk(library.index_dir):
            for name in files:
                if name.endswith((".seg", ".toc")) or name.startswith("_"):
                    with open(os.path.join(root, name), "r+b") as f:
                        f.write(b"\0garbage\0" * 8)
        index = SearchIndex(library.index_dir)
        assert indexing.ensure_index(db, index) == "rebuilt"
        assert index.search("thu vien").total == 1
        # A write lock left behind by a killed process.
        index.close()
        lock_dirs = [p for p in library.index_dir.iterdir() if p.is_dir()]
        for folder in lock_dirs:
            (folder / "WRITELOCK").write_text("")
        index = SearchIndex(library.index_dir)
        assert indexing.ensure_index(db, index) in ("current", "rebuilt", "caught-up")
        assert index.search("duong").total >= 1
        # Gone entirely.
        index.close()
        shutil.rmtree(library.index_dir)
        index = SearchIndex(library.index_dir)
        assert indexing.ensure_index(db, index) == "rebuilt"
        assert index.search("lo van sang").total == 1
    finally:
        index.close()
        db.close()


def _doc(book_id: int, text: str, *, title: str = "", language: str = "vi", subjects=()) -> IndexDoc:
    return IndexDoc(book_id, title or f"Sách {book_id}", (f"Tác giả {book_id % 3}",), tuple(subjects), language,
                    "", ((1, "Một", text),))


def test_search_over_several_commits_replacements_and_removals(tmp_path):
    """Books added in several commits, one replaced, some removed: totals, facets, phrases and
    exclusions agree with a plain reading of what each live book says."""
    import random

    rng = random.Random(5)
    words = ["con", "đường", "bản", "núi", "mây", "nước", "sáng", "chiều", "khèn", "ngô"]
    books: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    index = SearchIndex(tmp_path / "index")
    try:
        for batch in range(4):  # four commits, so four segments before any merge
            docs = []
            for n in range(batch * 30, batch * 30 + 30):
                text = " ".join(rng.choice(words) for _ in range(12))
                language = rng.choice(["vi", "vi", "en"])
                subjects = tuple(rng.sample(["Thiếu nhi", "Nông nghiệp", "Truyện"], rng.randint(0, 2)))
                books[n] = (text, language, subjects)
                docs.append(_doc(n, text, language=language, subjects=subjects))
            index.add_books(docs)
        assert index.search("con").total == sum("con" in t.split() for t, _, _ in books.values())
        books[7] = ("một câu hoàn toàn mới về khèn", "vi", ())
        index.add_books([_doc(7, books[7][0])])
        removed = [3, 31, 64, 65, 99]
        index.remove_books(removed)
        for n in removed:
            del books[n]

        def folded(text: str) -> list[str]:
            return fold(text).split()

        def has_phrase(text: str, phrase: str) -> bool:
            w, p = folded(text), folded(phrase)
            return any(w[i:i + len(p)] == p for i in range(len(w) - len(p) + 1))

        assert index.book_ids() == set(books)
        for query, test in [
            ("nuoc", lambda t: "nuoc" in folded(t)),
            ("nuoc sang", lambda t: {"nuoc", "sang"} <= set(folded(t))),
            ('"con duong"', lambda t: has_phrase(t, "con đường")),
            ("nui -may", lambda t: "nui" in folded(t) and "may" not in folded(t)),
            ("hoan toan moi", lambda t: has_phrase(t, "hoàn toàn mới")),
        ]:
            expected = {n for n, (t, _, _) in books.items() if test(t)}
            page = index.search(query, pagelen=100)
            assert {h.book_id for h in page.hits} == expected, query
            assert page.total == len(expected), query
            languages: dict[str, int] = {}
            for n in expected:
                languages[books[n][1]] = languages.get(books[n][1], 0) + 1
            assert page.languages == dict(sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))), query
            subjects: dict[str, int] = {}
            for n in expected:
                for s in books[n][2]:
                    subjects[s] = subjects.get(s, 0) + 1
            assert dict(sorted(page.subjects.items())) == dict(sorted(subjects.items())), query
            only_en = index.search(query, language="en", pagelen=100)
            assert {h.book_id for h in only_en.hits} == {n for n in expected if books[n][1] == "en"}, query
            children = index.search(query, subject="Thiếu nhi", pagelen=100)
            assert {h.book_id for h in children.hits} == {n for n in expected if "Thiếu nhi" in books[n][2]}
            scores = [h.score for h in page.hits]
            assert all(math.isfinite(x) for x in scores), (query, scores)
            assert scores == sorted(scores, reverse=True), query
        # Pages are slices of one order: no book twice, none lost.
        seen = [h.book_id for p in (1, 2, 3, 4, 5) for h in index.search("con", page=p, pagelen=7).hits]
        assert len(seen) == len(set(seen)) == min(35, index.search("con").total)
    finally:
        index.close()


@pytest.mark.parametrize("text, words, marked", [
    ("Con ĐƯỜNG lên bản.", {"duong"}, "ĐƯỜNG"),
    ("Trời mưa, " + "nu\u031b\u0301o\u031bc" + " chảy.", {"nuoc"}, "nu\u031b\u0301o\u031bc"),  # decomposed
    ("ذهبَ الأطفالُ إلى المَكْتَبَةِ اليوم", {"المكتبه"}, "المَكْتَبَةِ"),
    ("Die Straße ist lang", {"strasse"}, "Straße"),  # a letter folding to two: folded first
    ("東京の図書館へ行く", {"図", "書"}, "図"),  # CJK: each character a word
    ("東京の図書館へ行く", {"館"}, "館"),
    ("Chữ 漢lập ra", {"lap"}, "lập"),  # a word right after a CJK character
    ("ｶﾞイド", {"ｶﾞ"}, None),  # half-width kana: folded as a whole (to ガ)
    ("ｶﾞイド", {"ガ"}, "ｶﾞ"),
    ("Un élève lit à l'école.", {"ecole"}, "école"),
    ("nothing here", {"duong"}, None),
])
def test_snippets_find_words_in_unfolded_text(text, words, marked):
    from appliance.search.snippets import make_snippet
    snippet = make_snippet(text, frozenset(words))
    if marked is None:
        assert snippet == ""
    else:
        assert f"<mark>{marked}</mark>" in snippet


def test_marked_spans_are_whole_words_even_where_a_window_starts_inside_one():
    from appliance.search.snippets import _matching_spans
    text = "Xuân an, ĐƯỜNG an."
    assert _matching_spans(text, frozenset({"an"}), 2, len(text)) == [(5, 7), (15, 17)]  # not "ân" of Xuân
    assert _matching_spans(text, frozenset({"duong"}), 9, 14) == [(9, 14)]
    assert _matching_spans(text, frozenset({"uong"}), 10, len(text)) == []
    assert _matching_spans("banana ana, ana", frozenset({"ana"}), 0, 99) == [(7, 10), (12, 15)]
    from appliance.search.snippets import _first_phrase
    assert _first_phrase("ba a a", (("a", "a"),)) == 3  # the whole words, after a false start


def test_only_the_search_module_imports_whoosh():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    importers = sorted(str(p.relative_to(root)) for folder in ("appliance", "content_sync", "ui")
                       for p in (root / folder).rglob("*.py")
                       if any(line.lstrip().startswith(("import whoosh", "from whoosh"))
                              for line in p.read_text(encoding="utf-8").splitlines()))
    assert importers == ["appliance/search/index.py"]


def test_author_and_title_words_rank_first_when_other_books_lack_subjects(tmp_path):
    """Books without subjects or authors must not spoil the ranking of the others (a missing
    field once gave every score NaN)."""
    common = "gia đình khái hưng " * 3
    docs = [IndexDoc(n, f"Truyện {n}", (), (), "vi", "", ((1, "Một", common + f"chuyện {n}"),)) for n in range(1, 30)]
    docs.append(IndexDoc(99, "Gia đình", ("Khái Hưng",), ("Tiểu thuyết",), "vi", "", ((1, "Một", "Một câu chuyện."),)))
    index = SearchIndex(tmp_path / "index")
    try:
        index.add_books(docs)
        page = index.search("khai hung gia")
        assert page.hits[0].book_id == 99
        assert all(math.isfinite(h.score) for h in page.hits)
    finally:
        index.close()


def test_a_book_named_by_the_query_without_a_description_still_gets_a_snippet(tmp_path):
    index = SearchIndex(tmp_path / "index", chapter_loader=lambda book_id, positions=None, head=None: [(0, "Một", "Gia đình ấy sống ở bản.", True)])
    try:
        index.add_books([IndexDoc(1, "Gia đình", ("Khái Hưng",), (), "vi", "", ((0, "Một", "Gia đình ấy sống ở bản."),)),
                         IndexDoc(2, "Gia đình", ("Khái Hưng",), (), "vi", "Gia đình: một truyện dài.",
                                  ((0, "Một", "Gia đình ấy sống ở bản."),))])
        hits = {h.book_id: h for h in index.search("gia dinh").hits}
        assert "<mark>Gia</mark>" in hits[1].snippet and hits[1].chapter_position == 0
        assert hits[2].snippet.startswith("<mark>Gia</mark> <mark>đình</mark>: một") and hits[2].chapter_position is None
    finally:
        index.close()


def test_chapter_marks_never_miss_a_word_and_rarely_claim_one():
    rng = random.Random(5)
    vocabulary = [f"từ{n}" for n in range(5000)]
    chapters = [(p, f"Chương {p}", " ".join(rng.sample(vocabulary, 300))) for p in range(40)]
    marks = chapter_marks(chapters)
    for position, _, text in chapters:
        for word in tokens(text)[:50]:
            assert position in list(chapters_with_any(marks, [word]))
    absent = [fold(f"không{n}") for n in range(500)]
    claimed = sum(len(list(chapters_with_any(marks, [w]))) for w in absent) / (500 * len(chapters))
    assert claimed < 0.06
    assert list(chapters_with_any(marks, ["chuong"])) == list(range(40))  # chapter titles count


def test_snippets_read_only_the_chapters_holding_the_words(tmp_path):
    chapters = tuple((p, f"Phần {p}", "Trời mưa cả ngày trên núi. " * 50) for p in range(30))
    chapters = chapters[:17] + ((17, "Phần 17", "Ở đây có con đường về bản Tà Xùa."),) + chapters[18:]
    asked = []

    def loader(book_id, positions=None, head=None):
        asked.append(positions)
        return [(*c, True) for c in chapters if positions is None or c[0] in positions]

    index = SearchIndex(tmp_path / "index", chapter_loader=loader)
    try:
        index.add_books([IndexDoc(1, "Núi", ("Ai đó",), (), "vi", "", chapters)])
        hit = index.search("ta xua").hits[0]
        assert hit.chapter_position == 17 and "<mark>Tà</mark> <mark>Xùa</mark>" in hit.snippet
        assert asked == [[17]]
        asked.clear()  # words in every chapter: the first few are asked for, and the first one shows
        hit = index.search("troi mua").hits[0]
        assert hit.chapter_position == 0 and asked == [[0, 1, 2, 3]]
    finally:
        index.close()


def test_a_quoted_phrase_shows_where_the_phrase_is_not_just_its_words(tmp_path):
    chapters = ((0, "Một", "Con chim bay qua. " * 30 + "Cô gái ngồi đợi."),
                (1, "Hai", "Mưa trên núi. " * 40 + "Đó là con gái xứ Mường, đi chợ sớm. " + "Mưa trên núi. " * 40))

    def loader(book_id, positions=None, head=None):
        return [(*c, True) for c in chapters if positions is None or c[0] in positions]

    index = SearchIndex(tmp_path / "index", chapter_loader=loader)
    try:
        index.add_books([IndexDoc(1, "Núi", ("Ai đó",), (), "vi", "", chapters)])
        phrase = index.search('"con gai xu"').hits[0]
        assert phrase.chapter_position == 1
        assert "<mark>con</mark> <mark>gái</mark> <mark>xứ</mark> Mường" in phrase.snippet
        words = index.search("con gai xu").hits[0]  # the same words unquoted: their first chapter
        assert words.chapter_position == 0
    finally:
        index.close()


def test_folding_character_by_character_gives_what_fold_gives_and_where_each_came_from():
    from appliance.textfold import fold_mapped
    samples = ["Thư viện trên núi", "Thư viện trên núi", "Cœur ﬁdèle, Straße", "المَكْتَبَةِ العامة",
               "thư\u00adviện ᴀᴜᴛᴇᴜʀ −5 ＡＢＣ"]
    for text in samples:
        folded, origin = fold_mapped(text)
        assert folded == fold(text)
        if origin is not None:
            assert len(origin) == len(folded) + 1 and origin[-1] == len(text)
            assert all(fold(text[origin[i]]).startswith(folded[i]) or folded[i] in fold(text[origin[i]])
                       for i in range(len(folded)))
    assert fold_mapped("Đường về")[1] is None  # one for one: positions are the same
    assert fold_mapped("東京の図書館、ＡＢ")[0] == fold("東京の図書館、ＡＢ")
    for text in ("ｶﾞ", "한국어", "नमस्ते", "\u304b\u3099"):  # folding there depends on neighbours: left to fold()
        assert fold_mapped(text) is None


def test_snippets_decompress_the_head_of_a_long_chapter_and_the_rest_only_when_needed(tmp_path):
    import sqlite3
    import zlib

    from appliance.storage.catalog import chapter_loader
    filler = "Mưa trên núi, sương trên đồi. " * 6000  # 180,000 characters, beyond the head
    texts = {1: "Đường về bản Tà Xùa. " + filler, 2: filler + "Đường về bản Tà Xùa.", 3: filler + "Cô gái ngồi đợi.",
             4: filler[:42_000] + "Đường về bản Tà Xùa. " + filler}  # about 53 KB in
    conn = sqlite3.connect(tmp_path / "c.db", check_same_thread=False)
    conn.execute("CREATE TABLE chapters (book_id INTEGER, position INTEGER, title TEXT, text_z BLOB)")
    conn.executemany("INSERT INTO chapters VALUES (?, 0, 'Một', ?)",
                     [(b, zlib.compress(t.encode())) for b, t in texts.items()])
    load = chapter_loader(lambda: conn)
    (_, _, head, complete), = load(1, None, 1001)  # cut inside a character: that character is left out
    assert not complete and texts[1].startswith(head) and 990 < len(head.encode()) <= 1001
    asked = []

    def loader(book_id, positions=None, head=None):
        asked.append((book_id, head))
        return load(book_id, positions, head)

    index = SearchIndex(tmp_path / "index", chapter_loader=loader)
    try:
        index.add_books([IndexDoc(b, f"Sách {b}", ("Ai đó",), (), "vi", "", ((0, "Một", t),)) for b, t in texts.items()])
        hits = {h.book_id: h for h in index.search("ta xua").hits}
        assert set(hits) == {1, 2, 4}
        assert all("<mark>Tà</mark> <mark>Xùa</mark>" in h.snippet and h.chapter_position == 0 for h in hits.values())
        first, head = SNIPPET_FIRST_BYTES, SNIPPET_HEAD_BYTES
        # Book 1's words are in the first bytes, book 4's in the head, book 2's past it: its whole chapter is read.
        assert sorted(asked, key=str) == sorted([(1, first), (2, first), (2, head), (2, None), (4, first), (4, head)],
                                                key=str)
    finally:
        index.close()


def test_a_phrase_needs_its_words_not_only_their_pair_buckets(tmp_path, monkeypatch):
    # With one bucket every word pair of every book falls in it: only the words can tell.
    monkeypatch.setattr(wordpairs, "PAIR_BUCKETS", 1)
    index = SearchIndex(tmp_path / "index")
    try:
        index.add_books([_doc(1, "Trước vành móng ngựa, phóng sự."), _doc(2, "महाभारत कथा पुराण")])
        assert {h.book_id for h in index.search('"truoc vanh"').hits} == {1}
        assert index.search('"vanh truoc"').total == 1  # buckets cannot tell the order apart here
    finally:
        index.close()


def test_the_words_given_to_the_index_are_what_its_analyzers_make_of_the_text(tmp_path):
    """``all`` and ``pairs`` are handed to Whoosh as lists of words, the text folded once: they
    must hold what the fields' analyzers make of the same text, and the chapter marks what
    ``chapter_marks`` makes of the chapters."""
    doc = IndexDoc(4, "Đường về bản", ("Hà Thị Mai", "Lò Văn Sáng"), ("Tiểu thuyết",), "vi",
                   "Một truyện\x1f dài; ___ và ﬁn",
                   ((0, "Phần một", "Tiếng khèn vọng lại. Con đường lên bản quanh co."),
                    (1, "", "nu\u031b\u0301o\u031bc chảy, 東京の図書館, ذهبَ الأطفالُ إلى المَكْتَبَةِ"),
                    (2, "Rỗng", "")))
    document, = index_documents(doc)
    schema = search_module.make_schema()
    text = SEP.join([clean(doc.title), *doc.authors, *doc.subjects, doc.description.replace("\x1f", " "),
                     *(f"{t}\n{x}" for _, t, x in doc.chapters)])
    for field in ("all", "pairs"):
        from_text = sorted(schema[field].index(text))
        assert from_text and sorted(schema[field].index(document[field])) == from_text, field
    assert document["marks"] == chapter_marks(doc.chapters)


def test_an_index_written_through_sorted_runs_answers_like_one_written_in_memory(tmp_path, monkeypatch):
    rng = random.Random(7)
    vocabulary = [f"từ{n}" for n in range(3000)]
    docs = [_doc(n, " ".join(rng.choice(vocabulary) for _ in range(80)), language=rng.choice(["vi", "en"]))
            for n in range(300)]
    runs = []
    write_run = search_module.ChunkedPostingPool._write_run

    def counted(self, f, items):
        runs.append(1)
        return write_run(self, f, items)

    monkeypatch.setattr(search_module.ChunkedPostingPool, "_write_run", counted)
    monkeypatch.setattr(search_module, "RUN_CHUNK", 7)  # many chunks, most runs ending inside one
    answers = []
    for limit_mb in (256, 1):  # in memory, then through runs of 1 MB (about 6,000 postings)
        monkeypatch.setattr(search_module, "REBUILD_WRITER_MB", limit_mb)
        runs.clear()
        index = SearchIndex(tmp_path / f"index-{limit_mb}")
        try:
            assert index.rebuild(docs) == 300
            answers.append([[(h.book_id, h.score) for h in index.search(q, pagelen=100).hits]
                            for q in ("từ5", "từ17 từ2", '"từ1 từ2"', "tac gia 1 -từ3", "sach 12")])
        finally:
            index.close()
        assert bool(runs) == (limit_mb == 1)
    assert answers[0] == answers[1] and all(answers[0][:2])


def test_a_books_stored_fields_are_read_once_until_the_index_changes(tmp_path):
    texts = {1: "Tiếng khèn vọng lại từ phía đồi.", 2: "Con suối chảy qua bản, tiếng khèn ngân."}
    chapters = {b: ((0, "Một", t),) for b, t in texts.items()}

    def loader(book_id, positions=None, head=None):
        for position, title, text in chapters[book_id]:
            if positions is None or position in positions:
                yield position, title, text, True

    index = SearchIndex(tmp_path / "index", chapter_loader=loader)
    try:
        index.add_books([IndexDoc(b, f"Sách {b}", ("Ai đó",), (), "vi", "", chapters[b]) for b in texts])
        searcher = index._get_searcher()
        read = []
        stored_fields = searcher.stored_fields
        searcher.stored_fields = lambda docnum: (read.append(docnum), stored_fields(docnum))[1]
        for words in ("khen", "tieng khen", "khen -suoi", "khen"):  # different words, the same two books
            assert {h.book_id for h in index.search(words).hits} <= {1, 2}
        assert sorted(read) == [0, 1]
        chapters[1] = ((0, "Một", "Tiếng sáo trên nương ngô."),)  # a new version of book 1
        index.add_books([IndexDoc(1, "Sách 1", ("Ai đó",), (), "vi", "", chapters[1])])
        hit, = index.search("sao").hits
        assert hit.book_id == 1 and "<mark>sáo</mark>" in hit.snippet
        assert [h.book_id for h in index.search("khen").hits] == [2]
    finally:
        index.close()


def test_the_filter_links_are_what_url_for_makes(client):
    from flask import url_for

    from appliance.web.views.public.search import _link

    with client.application.test_request_context("/"):
        base = url_for("search.search")
        for params in (dict(q="thư viện / a+b & c?d", subject="Văn học; x:y", lang=None),
                       dict(q="x", lang="vi", subject=None, page=2), dict(q='"ban an" -x', page=1)):
            assert _link(base, **params) == url_for("search.search", **params)


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
