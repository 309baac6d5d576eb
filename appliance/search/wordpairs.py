"""The terms of quoted phrases: each two neighbouring folded words as one hashed term
(``pair_term``), in the index's ``pairs`` field and in a phrase's query alike."""
from __future__ import annotations

import zlib

__all__ = ["PAIR_BUCKETS", "pair_term", "pairs_of"]

PAIR_BUCKETS = 1 << 22


def pair_term(first: str, second: str) -> str:
    """The ``pairs`` term of two neighbouring folded words: one of ``PAIR_BUCKETS`` buckets.

    Hashing bounds the term table (a 10,000-book catalog has tens of millions of distinct word
    pairs); the price is a rare false match, which needs a book that has every word of the phrase,
    and, for each pair, another pair of its own that falls in the same bucket.
    """
    return format(zlib.crc32(f"{first} {second}".encode()) % PAIR_BUCKETS, "x")


def pairs_of(toks: tuple[str, ...]) -> list[str]:
    return [pair_term(a, b) for a, b in zip(toks, toks[1:], strict=False)]
