"""Snippets: about ``SNIPPET_CHARS`` characters of a text around the words a reader looked for,
escaped, the words in ``<mark>`` (``make_snippet``). The words are found in the text folded
(``appliance.textfold``), and marked in the text as it was.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from functools import lru_cache

import numpy as np

from appliance.textfold import CJK_CHAR, WORD, fold, fold_mapped, iter_folded_tokens

__all__ = ["SNIPPET_CHARS", "make_snippet"]

SNIPPET_CHARS = 200
SNIPPET_WINDOW = 4000
PHRASE_SCAN_CHARS = 40_000  # of a chapter, looked through for a quoted phrase's snippet


@lru_cache(maxsize=8192)
def _fold_word(word: str) -> tuple[str, ...]:
    return tuple(iter_folded_tokens(fold(word)))


def _locator(words: frozenset[str]) -> re.Pattern[str]:
    """A pattern finding any of ``words`` in folded text (CJK characters match anywhere)."""
    parts = []
    for w in sorted(words, key=len, reverse=True):
        if len(w) == 1 and not w.isascii() and WORD.fullmatch(w) and ord(w) >= 0x3000:
            parts.append(re.escape(w))
        else:
            parts.append(rf"(?<![^\W_]){re.escape(w)}(?![^\W_])")
    return re.compile("|".join(parts))


@lru_cache(maxsize=256)
def _raw_word(word: str) -> re.Pattern[str]:
    """A pattern finding the folded ``word`` in a folded window (see ``_whole``)."""
    return _raw_phrase((word,))


@lru_cache(maxsize=64)
def _raw_phrase(words: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern finding the folded ``words`` one after the other (anything but letters and
    digits between them) in a folded window, not followed by a letter or digit. It starts with
    the first word itself, not with a look back, so that the regular expression engine can skip
    ahead to where that word is (several times faster); ``_whole`` checks what comes before."""
    body = r"[\W_]*".join(map(re.escape, words))
    if CJK_CHAR.match(words[-1][-1]):  # a word by itself, whatever follows
        return re.compile(body)
    return re.compile(rf"{body}(?![^\W_])")


_ALNUM = re.compile(r"[^\W_]")


def _whole(pattern: re.Pattern[str], folded: str, pos: int) -> Iterator[re.Match[str]]:
    """The matches of ``pattern`` in ``folded`` from ``pos`` that start a word, one after the other
    (after one that does not, the next is looked for from its second character). A CJK
    character is a word by itself."""
    m = pattern.search(folded, pos)
    while m is not None:
        start = m.start()
        if (start == 0 or not _ALNUM.match(folded, start - 1) or CJK_CHAR.match(folded, start)
                or CJK_CHAR.match(folded, start - 1)):
            yield m
            m = pattern.search(folded, m.end())
        else:
            m = pattern.search(folded, m.start() + 1)


class _Window:
    """A slice of a text folded with ``fold_mapped``, beginning one character before the slice
    (so that patterns see where a word begins); maps positions in it back to the text."""

    __slots__ = ("folded", "base", "origin", "pos")

    def __init__(self, folded: str, base: int, origin, start: int):
        self.folded, self.base, self.origin = folded, base, origin
        # Where the slice itself begins in the folded text.
        self.pos = start - base if origin is None else int(np.searchsorted(origin, start - base))

    def start_of(self, i: int) -> int:
        """Where the folded character ``i`` came from in the text."""
        return self.base + (i if self.origin is None else int(self.origin[i]))

    def end_of(self, i: int) -> int:
        """Where in the text a match of the folded text ending at ``i`` ends (taking in marks
        that folded to nothing after it)."""
        if self.origin is None:
            return self.base + i
        return self.base + max(int(self.origin[i - 1]) + 1, int(self.origin[i]))


def _folded_window(text: str, start: int, end: int) -> _Window | None:
    """``text[start:end]`` folded (see _Window); None when it holds a character that
    ``fold_mapped`` cannot fold alone."""
    base = max(0, start - 1)
    mapped = fold_mapped(text[base:end])
    if mapped is None:
        return None
    return _Window(mapped[0], base, mapped[1], start)


def _first_match(text: str, words: frozenset[str]) -> int:
    """Where the first of ``words`` is in ``text`` (about), or -1."""
    return _first_in_windows(text, [_raw_word(w) for w in words], lambda: _locator(words), len(text), 100)


def _first_phrase(text: str, phrases: tuple[tuple[str, ...], ...]) -> int:
    """Where the first of the quoted ``phrases`` is in the first ``PHRASE_SCAN_CHARS`` of
    ``text`` (about), or -1: a phrase further on is left for the words (chapters of whole books
    run to hundreds of thousands of characters)."""
    return _first_in_windows(text, [_raw_phrase(p) for p in phrases],
                             lambda: re.compile("|".join(r"[\W_]*".join(map(re.escape, p)) for p in phrases)),
                             min(len(text), PHRASE_SCAN_CHARS), 200)


def _first_in_windows(text: str, patterns: list[re.Pattern[str]], locator: Callable[[], re.Pattern[str]],
                      limit: int, overlap: int) -> int:
    """Where the first match is, window by window up to ``limit``, stopping at the first window
    with one: chapters can be long and most matches come early. Windows overlap so a match cut at
    a window's edge is still found. A window that folds character by character (``fold_mapped``)
    is searched with ``patterns``; any other is folded as a whole and searched with ``locator()``."""
    folded_locator = None
    for offset in range(0, limit, SNIPPET_WINDOW):
        end = offset + SNIPPET_WINDOW + overlap
        window = _folded_window(text, offset, end)
        if window is not None:
            starts = [m.start() for m in (next(_whole(p, window.folded, window.pos), None) for p in patterns) if m]
            if starts:
                return window.start_of(min(starts))
            continue
        folded_locator = folded_locator or locator()
        window_text = text[offset:end]
        folded = fold(window_text)
        found = folded_locator.search(folded)
        if found:
            # Folding keeps lengths nearly equal; look around the same relative place in the original.
            return offset + int(found.start() * len(window_text) / max(1, len(folded)))
    return -1


def make_snippet(text: str, words: frozenset[str], width: int = SNIPPET_CHARS,
                 phrases: tuple[tuple[str, ...], ...] = (), complete: bool = True) -> str | None:
    """About ``width`` characters of ``text`` around the first of the quoted ``phrases`` (if one is
    in it), else around the first of ``words``; escaped, words in <mark>.

    Returns "" when none of the words occurs in ``text``. With ``complete`` false, ``text`` is
    only the beginning of a text, and None says that the rest is needed to decide.
    """
    if not text or not words:
        return "" if complete else None
    guess = _first_phrase(text, phrases) if phrases else -1
    if guess < 0 and phrases and not complete and len(text) < PHRASE_SCAN_CHARS + SNIPPET_WINDOW:
        return None
    if guess < 0:
        guess = _first_match(text, words)
    if not complete and (guess < 0 or guess + 2 * width + 400 > len(text)):
        return None
    if guess < 0:
        return ""
    spans = _matching_spans(text, words, max(0, guess - 400), guess + 400)
    if not spans:
        spans = _matching_spans(text, words, 0, len(text))
    if not spans:
        return ""
    first = spans[0][0]
    start = max(0, first - width // 3)
    if start > 0:
        space = text.rfind(" ", max(0, start - 20), start)
        start = space + 1 if space >= 0 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.find(" ", end, end + 20)
        end = space if space >= 0 else end
    out = ["…" if start > 0 else ""]
    cursor = start
    for a, b in _matching_spans(text, words, start, end):
        a, b = max(a, start), min(b, end)
        out.append(html.escape(text[cursor:a], quote=False))
        out.append("<mark>" + html.escape(text[a:b], quote=False) + "</mark>")
        cursor = b
    out.append(html.escape(text[cursor:end], quote=False))
    if end < len(text):
        out.append("…")
    return " ".join("".join(out).split())


def _matching_spans(text: str, words: frozenset[str], start: int, end: int) -> list[tuple[int, int]]:
    """Where the words of ``text[start:end]`` that fold to one of ``words`` are, in order."""
    end = min(len(text), end)
    window = _folded_window(text, start, end)
    if window is not None:
        return sorted((window.start_of(m.start()), window.end_of(m.end()))
                      for w in words for m in _whole(_raw_word(w), window.folded, window.pos))
    spans = []
    for m in WORD.finditer(text, start, end):
        if any(tok in words for tok in _fold_word(m.group())):
            spans.append((m.start(), m.end()))
    return spans
