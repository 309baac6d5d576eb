"""Make a benchmark catalog: the real corpus EPUBs, then N generated EPUBs built from the real corpus text.

    python bench/catalog_gen.py --books 10000 --out bench/out/books-10000

Generated books take their paragraphs, titles and author names from the Vietnamese public-domain works in
../shared/corpus/vi (and some English/French/Arabic text from ../shared/corpus/epub3-samples), so sizes,
scripts and diacritics are realistic. Output is deterministic for a given --seed.
"""
from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.books.demo import DemoBook, DemoChapter, write_epub

SHARED = Path(__file__).resolve().parents[2] / "shared"
TAG = re.compile(r"<[^>]+>")
SPACE = re.compile(r"\s+")


def _paragraphs_of(epub_path: Path) -> list[str]:
    out = []
    try:
        with zipfile.ZipFile(epub_path) as z:
            for name in z.namelist():
                if name.lower().endswith((".xhtml", ".html", ".htm")):
                    raw = z.read(name).decode("utf-8", "replace")
                    raw = re.sub(r"(?is)<(script|style|head)[^>]*>.*?</\1>", " ", raw)
                    for block in re.split(r"(?i)</p>|<br\s*/?>|</h\d>|</div>", raw):
                        text = SPACE.sub(" ", TAG.sub(" ", block)).strip()
                        text = text.replace("&nbsp;", " ").replace("&amp;", "&")
                        if len(text) > 40:
                            out.append(text)
    except (zipfile.BadZipFile, OSError):
        pass
    return out


def load_corpus(shared: Path = SHARED) -> dict[str, list[str]]:
    """Paragraphs by language from the real corpus."""
    corpus: dict[str, list[str]] = {"vi": []}
    for path in sorted((shared / "corpus" / "vi").glob("*.epub")):
        corpus["vi"].extend(_paragraphs_of(path))
    others = {"en": ["moby-dick.epub", "trees.epub", "linear-algebra.epub"],
              "fr": ["sous-le-vent.epub", "page-blanche.epub"],
              "ar": ["regime-anticancer-arabic.epub"]}
    for lang, names in others.items():
        corpus[lang] = []
        for name in names:
            corpus[lang].extend(_paragraphs_of(shared / "corpus" / "epub3-samples" / name))
    return {k: v for k, v in corpus.items() if v}


def author_names(shared: Path = SHARED) -> list[str]:
    names = set()
    for path in (shared / "corpus" / "vi").glob("*.epub"):
        parts = path.stem.split("_")
        if len(parts) >= 2:
            names.add(" ".join(w.capitalize() for w in parts[1].split("-")))
    return sorted(names) or ["Khuyết Danh"]


def generate(out: Path, books: int, seed: int = 1, include_real: bool = True, shared: Path = SHARED) -> list[Path]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if include_real:
        for path in sorted((shared / "corpus" / "vi").glob("*.epub")) + sorted(
                (shared / "corpus" / "epub3-samples").glob("*.epub"))[:20]:
            target = out / f"real-{path.name}"
            if not target.exists():
                shutil.copyfile(path, target)
            paths.append(target)
    corpus = load_corpus(shared)
    authors = author_names(shared)
    languages = [lang for lang in ("vi", "vi", "vi", "vi", "vi", "vi", "en", "fr", "ar") if lang in corpus]
    subjects = ["Tiểu thuyết", "Truyện ngắn", "Thơ", "Lịch sử", "Nông nghiệp", "Sức khỏe", "Thiếu nhi", "Khoa học"]
    for n in range(books):
        target = out / f"gen-{n:06d}.epub"
        paths.append(target)
        if target.exists():
            continue
        lang = rng.choice(languages)
        pool = corpus[lang]
        title_words = rng.choice(pool).split()[: rng.randint(2, 6)]
        title = " ".join(title_words).strip(" ,.;:!?\"'") + f" {n}"
        chapters = []
        for c in range(rng.randint(3, 10)):
            start = rng.randrange(len(pool))
            count = rng.randint(5, 40)
            chapters.append(DemoChapter(f"Chương {c + 1}" if lang == "vi" else f"Chapter {c + 1}",
                                        tuple(pool[(start + i) % len(pool)] for i in range(count))))
        book = DemoBook(
            title=title,
            authors=(rng.choice(authors),) if lang == "vi" else (f"Author {rng.randint(1, 500)}",),
            language=lang,
            subjects=tuple(rng.sample(subjects, rng.randint(1, 2))),
            description=rng.choice(pool)[:300],
            chapters=tuple(chapters),
            cover_color=(rng.randint(0, 200), rng.randint(0, 200), rng.randint(0, 200)) if rng.random() < 0.7 else None,
            identifier=f"urn:bench:{seed}:{n}",
        )
        write_epub(target, book)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-real", action="store_true")
    args = parser.parse_args()
    paths = generate(args.out, args.books, seed=args.seed, include_real=not args.no_real)
    size = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} EPUBs, {size / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
