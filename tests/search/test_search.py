"""Search as readers use it: folded accents, Arabic spelling variants, no stop words, ranking, filters, recovery."""
from __future__ import annotations

import math
import os
import random
import shutil
import urllib.parse

import pytest

from appliance.search import index as search_module
from appliance.search import upkeep as indexing
from appliance.search import wordpairs
from appliance.search.chaptermarks import chapter_marks, chapters_with_any
from appliance.search.documents import SEP, IndexDoc, index_documents
from appliance.search.hits import SNIPPET_FIRST_BYTES, SNIPPET_HEAD_BYTES
from appliance.search.index import SearchIndex
from appliance.storage import db as dbmod
from appliance.textfold import clean, fold, tokens
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
