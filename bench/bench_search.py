"""Measure the search index: build time, size on disk, query latency and memory.

    python bench/bench_search.py --books 10000
    python bench/bench_search.py --books 2000 --chapters 5 --chapter-chars 2000 --keep /tmp/ix

Books are synthetic but made of real text: paragraphs of the Vietnamese public-domain
works in ../shared/corpus/vi (and English, French and Arabic samples from
../shared/corpus/epub3-samples), with titles, authors and subjects drawn from them.
Prints a report; nothing is written outside a temporary folder unless --keep is given.
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

from appliance.search import IndexDoc, SearchIndex  # noqa: E402

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
    per_query = []
    for q, opts in queries:
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            page = index.search(q, **opts)
            runs.append((time.perf_counter() - t0) * 1000)
        times.extend(runs)
        per_query.append((statistics.median(runs), q, opts, page.total, page.relaxed,
                          sum(1 for h in page.hits if "<mark>" in h.snippet), len(page.hits)))
    times.sort()
    p = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
    print(f"{len(queries)} queries x {args.repeat}: p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms, max {times[-1]:.1f} ms")
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
