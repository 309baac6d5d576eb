"""EPUBs made to cost a reader too much: a huge chapter, deep nesting, many chapters, many zip entries, a
cover of too many pixels. Each is written here when a test needs it (no fixture files), at whatever size
the test asks for.
"""
from __future__ import annotations

import base64
import io
import os
import random
import zipfile
from pathlib import Path

from PIL import Image

from appliance.books.demo import DemoBook, DemoChapter, write_epub


def plain_book(title: str, chapters=(("One", ("A short first chapter.",)),), cover: bool = True) -> DemoBook:
    return DemoBook(title=title, authors=("Nobody",), language="en",
                    chapters=tuple(DemoChapter(t, tuple(p)) for t, p in chapters),
                    cover_color=(40, 90, 140) if cover else None)


def random_text(size: int, vocabulary: int = 0) -> str:
    """About ``size`` characters of text that compresses little (so that the zip bomb check lets it in):
    random base64 words, or with ``vocabulary`` words drawn from that many made-up ones."""
    if not vocabulary:
        raw = base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode("ascii")
        return " ".join(raw[i:i + 9] for i in range(0, len(raw), 9))[:size]
    rng = random.Random(1)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10))) for _ in range(vocabulary)]
    out, total = [], 0
    while total < size:
        line = " ".join(rng.choices(words, k=2000))
        out.append(line)
        total += len(line) + 1
    return "\n".join(out)[:size]


def big_chapter_epub(path: Path, chapter_bytes: int, vocabulary: int = 0, paragraph: int = 4000) -> Path:
    """A book whose second chapter is about ``chapter_bytes`` of HTML, in paragraphs."""
    text = random_text(chapter_bytes, vocabulary)
    body = "\n".join(f"<p>{text[i:i + paragraph]}</p>" for i in range(0, len(text), paragraph))
    return write_epub(path, plain_book("A very long chapter"), extra_chapter_html=body)


def deep_epub(path: Path, depth: int, tag: str = "div") -> Path:
    """A book with one chapter of ``depth`` elements nested one in the other."""
    body = f"<{tag}>" * depth + "<p>At the bottom of the well.</p>" + f"</{tag}>" * depth
    return write_epub(path, plain_book("A deep well"), extra_chapter_html=body)


def many_chapters_epub(path: Path, chapters: int) -> Path:
    return write_epub(path, plain_book("Many small chapters",
                                  [(f"Part {n}", (f"Paragraph of part {n}.",)) for n in range(chapters)]))


def many_entries_epub(path: Path, entries: int) -> Path:
    """A small readable book with ``entries`` more (tiny) files in its zip."""
    write_epub(path, plain_book("Many files"))
    with zipfile.ZipFile(path, "a") as z:
        for n in range(entries):
            z.writestr(f"OEBPS/misc/f{n}.txt", "")
    return path


def big_cover_png(size: tuple[int, int]) -> bytes:
    """A palette PNG with transparency of ``size`` pixels: a few KB on disk, four bytes a pixel decoded."""
    picture = Image.new("P", size, 0)
    picture.putpalette([255, 255, 255, 200, 30, 30])
    out = io.BytesIO()
    picture.save(out, "PNG", transparency=0, optimize=True)
    return out.getvalue()


def big_cover_epub(path: Path, size: tuple[int, int]) -> Path:
    return write_epub(path, plain_book("A huge cover", cover=False), images={"cover.png": big_cover_png(size)})
