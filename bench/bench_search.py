"""Measure the search index: build time, size on disk, query latency and memory.

    python bench/bench_search.py --books 10000
    python bench/bench_search.py --books 2000 --chapters 5 --chapter-chars 2000 --keep /tmp/ix

Books are synthetic but made of real text: paragraphs of the Vietnamese public-domain
works in ../shared/corpus/vi (and English, French and Arabic samples from
../shared/corpus/epub3-samples), with titles, authors and subjects drawn from them.
Prints a report; nothing is written outside a temporary folder unless --keep is given.

Each query also runs through a peer in the same process: the same matching, facet counts and
BM25 ranking done with Whoosh's own query matchers (how this box searched before
``appliance.search.postings``). The report gives both latencies, their ratio, and whether both found the
same number of books.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from catalog_gen import SHARED, author_names, load_corpus  # noqa: E402
from whoosh.query import And, AndMaybe, AndNot, Or, Term  # noqa: E402
from whoosh.scoring import BM25F  # noqa: E402
from whoosh.searching import Searcher  # noqa: E402

from appliance.search.documents import BOOST_FIELDS, IndexDoc
from appliance.search.index import SearchIndex
from appliance.search.query import parse_query
from appliance.search.wordpairs import pairs_of

SUBJECTS = ["Tiểu thuyết", "Truyện ngắn", "Thơ", "Lịch sử", "Nông nghiệp", "Sức khỏe", "Thiếu nhi", "Khoa học",
            "Văn học nước ngoài", "Giáo dục"]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def whoosh_peer(searcher, q: str, language: str | None = None, subject: str | None = None, page: int = 1,
                pagelen: int = 20) -> int:
    """The same search with Whoosh's matchers: returns the total (the page is ranked, then dropped)."""
    from collections import Counter

    parsed = parse_query(q)
    if not parsed.required:
        return 0

    def clause(toks):
        return Term("all", toks[0]) if len(toks) == 1 else And([Term("pairs", p) for p in pairs_of(toks)])

    def matching(any_word=False):
        qs = [clause(t) for t in parsed.required]
        query = Or(qs) if any_word else And(qs)
        if parsed.excluded:
            query = AndNot(query, Or([clause(t) for t in parsed.excluded]))
        return set(searcher.docs_for_query(query))

    reader = searcher.reader()
    matches = matching()
    if not matches and len(parsed.required) > 1:
        matches = matching(any_word=True)
    languages, subjects = Counter(), Counter()
    for name, counter in (("language", languages), ("subjects", subjects)):
        for raw in reader.lexicon(name):
            ids = set(reader.postings(name, raw.decode()).all_ids()) & matches
            if ids:
                counter[raw.decode()] = len(ids)
    allowed = matches
    if language:
        allowed = allowed & set(reader.postings("language", language).all_ids()) if ("language", language) in reader else set()
    if subject:
        allowed = allowed & set(reader.postings("subjects", subject).all_ids()) if ("subjects", subject) in reader else set()
    boosts = []
    for toks in parsed.required:
        for name, boost in BOOST_FIELDS:
            boosts.append(And([Term(name, t, boost=boost) for t in toks]))
    ranked = AndMaybe(Or([Term("all", w) for w in sorted(parsed.words())]), Or(boosts))
    if allowed:
        searcher.search(ranked, limit=page * pagelen, filter=allowed)
    return len(allowed)


def make_books(count: int, chapters: int, chapter_chars: int, seed: int) -> Iterator[IndexDoc]:
    rng = random.Random(seed)
    corpus = load_corpus(SHARED)
    authors = author_names(SHARED)
    languages = [lang for lang in ("vi",) * 7 + ("en", "fr", "ar") if lang in corpus]
    for n in range(1, count + 1):
        lang = rng.choice(languages)
        pool = corpus[lang]
        words = rng.choice(pool).split()
        title = " ".join(words[: rng.randint(2, 6)]).strip(" ,.;:!?\"'()") or f"Sách {n}"
        chs = []
        for c in range(chapters):
            start = rng.randrange(len(pool))
            parts, size = [], 0
            while size < chapter_chars:
                p = pool[(start + len(parts)) % len(pool)]
                parts.append(p)
                size += len(p) + 2
            chs.append((c + 1, (f"Chương {c + 1}" if lang == "vi" else f"Chapter {c + 1}"), "\n\n".join(parts)))
        yield IndexDoc(
            book_id=n, title=title,
            authors=(rng.choice(authors),) if lang == "vi" else (f"Author {rng.randint(1, 500)}",),
            subjects=tuple(rng.sample(SUBJECTS, rng.randint(1, 2))), language=lang,
            description=rng.choice(pool)[:300], chapters=tuple(chs),
        )


def pick_queries(books: list[IndexDoc], seed: int) -> list[tuple[str, dict]]:
    """About 50 queries of the kinds readers type: title and author words (often without accents),
    rare and common body words, phrases, filters, later pages, and words that find nothing."""
    from appliance.textfold import fold

    rng = random.Random(seed + 1)
    vi = [b for b in books if b.language == "vi"]
    qs: list[tuple[str, dict]] = []
    for b in rng.sample(vi, 8):
        qs.append((" ".join(b.title.split()[:3]), {}))
    for b in rng.sample(vi, 6):
        qs.append((fold(" ".join(b.title.split()[:2])), {}))
    for b in rng.sample(vi, 5):
        qs.append((fold(b.authors[0]), {}))
    for b in rng.sample(vi, 8):
        words = [w.strip(".,;:!?\"'()") for w in b.chapters[2][2].split()]
        words = [w for w in words if len(w) > 2]
        i = rng.randrange(max(1, len(words) - 4))
        qs.append((" ".join(words[i:i + 2]), {}))  # two neighbouring body words
        qs.append(('"' + " ".join(words[i:i + 3]) + '"', {}))  # a phrase
    for common in ("và", "khong", "người ta", "một", "nhà", "the", "của nó"):
        qs.append((common, {}))
    qs.append(("truyen", {"language": "vi"}))
    qs.append(("nguoi", {"subject": "Thơ"}))
    qs.append(("nhà", {"page": 3}))
    qs.append(("lịch sử", {"page": 2}))
    qs.append(("xyzzy plugh", {}))  # nothing, then the any-word retry
    qs.append(("thư viện xyzzy", {}))  # the any-word retry finds books
    qs.append(("مكتبة", {}))
    qs.append(("la mer", {"language": "fr"}))
    return qs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=10_000)
    parser.add_argument("--chapters", type=int, default=5)
    parser.add_argument("--chapter-chars", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="times each query is run")
    parser.add_argument("--keep", type=Path, help="build the index here and keep it")
    args = parser.parse_args()
    if not (SHARED / "corpus" / "vi").is_dir():
        sys.exit(f"{SHARED / 'corpus'} is not present")

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-search-")) / "index"
    print(f"books={args.books} chapters={args.chapters} chapter_chars={args.chapter_chars} folder={folder}")
    books = list(make_books(args.books, args.chapters, args.chapter_chars, args.seed))
    text_mb = sum(len(c[2].encode()) for b in books for c in b.chapters) / 1e6
    print(f"text: {text_mb:.1f} MB in {sum(len(b.chapters) for b in books)} chapters; RSS before index {rss_mb():.0f} MB")

    index = SearchIndex(folder)
    t0 = time.perf_counter()
    index.rebuild(iter(books))
    build = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"rebuild: {build:.1f} s ({args.books / build:.0f} books/s), index {size / 1e6:.1f} MB on disk, "
          f"peak RSS {peak_rss_mb():.0f} MB")

    # An incremental batch, as the catalog's queue replays it.
    extra = list(make_books(200, args.chapters, args.chapter_chars, args.seed + 7))
    extra = [IndexDoc(**{**b.__dict__, "book_id": args.books + b.book_id}) for b in extra]
    t0 = time.perf_counter()
    index.add_books(extra)
    print(f"add_books: 200 books in {time.perf_counter() - t0:.2f} s")

    queries = pick_queries(books, args.seed)
    del books, extra
    gc.collect()
    index.close()
    index = SearchIndex(folder)
    t0 = time.perf_counter()
    usable = index.is_usable()
    print(f"is_usable: {usable} in {(time.perf_counter() - t0) * 1000:.0f} ms")
    t0 = time.perf_counter()
    index.search("sách")
    print(f"first search after open: {(time.perf_counter() - t0) * 1000:.0f} ms")

    times: list[float] = []
    peer_times: list[float] = []
    per_query = []
    disagree = []
    peer = Searcher(index._get_searcher().reader(), weighting=BM25F())
    for q, opts in queries:
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            page = index.search(q, **opts)
            runs.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            peer_total = whoosh_peer(peer, q, **opts)
            peer_times.append((time.perf_counter() - t0) * 1000)
        if peer_total != page.total:
            disagree.append((q, opts, page.total, peer_total))
        times.extend(runs)
        per_query.append((statistics.median(runs), q, opts, page.total, page.relaxed,
                          sum(1 for h in page.hits if "<mark>" in h.snippet), len(page.hits)))
    times.sort()
    peer_times.sort()
    p = lambda f, t=times: t[min(len(t) - 1, int(f * len(t)))]  # noqa: E731
    print(f"{len(queries)} queries x {args.repeat}: p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms, max {times[-1]:.1f} ms")
    print(f"peer (Whoosh matchers, no snippets): p50 {p(0.5, peer_times):.1f} ms, p95 {p(0.95, peer_times):.1f} ms; "
          f"ratio box/peer p50 {p(0.5) / p(0.5, peer_times):.2f}, p95 {p(0.95) / p(0.95, peer_times):.2f}")
    print(f"totals differing from the peer: {len(disagree)} {disagree[:5]}")
    print("slowest queries (median ms, query, options, total, relaxed, hits with <mark>/hits):")
    for row in sorted(per_query, reverse=True)[:8]:
        print(f"  {row[0]:6.1f}  {row[1]!r} {row[2]} total={row[3]} relaxed={row[4]} marked={row[5]}/{row[6]}")
    print(f"RSS after searches: {rss_mb():.0f} MB (peak {peak_rss_mb():.0f} MB)")
    index.close()
    if not args.keep:
        shutil.rmtree(folder.parent, ignore_errors=True)
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
