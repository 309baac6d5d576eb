"""Which chapters of a book may hold a word: one small Bloom filter per chapter.

The search index keeps one document per book, so a hit says that a book has the words, not
where. A snippet needs the first chapter that has one of them, and reading chapter after
chapter from the catalog until one does was most of a search's time. The index therefore
stores, with each book, a bit set per chapter of its folded words (title and text): two bits
per word out of at least ``BITS_PER_WORD`` per distinct word, so a chapter without the word is
taken for one having it a few times in a hundred, and a chapter with it is never missed.

Marks are a tuple of ``(position, bits)`` in reading order; ``bits`` are bytes whose length
is a power of two (at most 8 KB: the two bit numbers of a word are the low and high halves of
its CRC-32).
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from appliance.textfold import fold, iter_folded_tokens

__all__ = ["chapter_marks", "chapters_with_all", "chapters_with_any", "marks_of_words"]

BITS_PER_WORD = 8
MIN_BYTES = 16
MAX_BYTES = 8192  # 65,536 bits: a bit number fits 16 bits


def _bit_numbers(h: int, nbits: int) -> tuple[int, int]:
    """The two bits of a word whose CRC-32 is ``h``."""
    return h & (nbits - 1), (h >> 16) & (nbits - 1)


def _bits_for(words: set[str]) -> bytes:
    size = MIN_BYTES
    while size < MAX_BYTES and size * 8 < BITS_PER_WORD * len(words):
        size *= 2
    nbits = size * 8
    bits = bytearray(size)
    for word in words:
        for n in _bit_numbers(zlib.crc32(word.encode("utf-8")), nbits):
            bits[n >> 3] |= 1 << (n & 7)
    return bytes(bits)


def chapter_marks(chapters: Iterable[tuple[int, str, str]]) -> tuple[tuple[int, bytes], ...]:
    """The marks of chapters given as (position, title, text)."""
    return marks_of_words((position, iter_folded_tokens(fold(f"{title or ''}\n{text or ''}")))
                          for position, title, text in chapters)


def marks_of_words(chapters: Iterable[tuple[int, Iterable[str]]]) -> tuple[tuple[int, bytes], ...]:
    """The marks of chapters given as (position, folded words of the title and text)."""
    return tuple((int(position), _bits_for(set(words))) for position, words in chapters)


def _chapters_with(marks: Iterable[tuple[int, bytes]], words: Iterable[str], need) -> Iterator[int]:
    hashes = [zlib.crc32(w.encode("utf-8")) for w in words]
    probes: dict[int, list[tuple[tuple[int, int], ...]]] = {}  # per bit-set size: (byte, mask) per bit, per word
    for position, bits in marks:
        if not bits:
            continue
        size = len(bits)
        if size not in probes:
            probes[size] = [tuple((n >> 3, 1 << (n & 7)) for n in _bit_numbers(h, size * 8)) for h in hashes]
        if need(all(bits[i] & mask for i, mask in word) for word in probes[size]):
            yield position


def chapters_with_any(marks: Iterable[tuple[int, bytes]], words: Iterable[str]) -> Iterator[int]:
    """Positions of the chapters that may hold at least one of the folded ``words``, in order, as
    they are found (a snippet usually needs only the first)."""
    return _chapters_with(marks, words, any)


def chapters_with_all(marks: Iterable[tuple[int, bytes]], words: Iterable[str]) -> Iterator[int]:
    """Positions of the chapters that may hold every one of the folded ``words``, in order, as they
    are found."""
    return _chapters_with(marks, words, all)
