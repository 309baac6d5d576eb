"""Search result snippets: a short, HTML-escaped piece of text with the matched words marked."""
from __future__ import annotations

import html
import re
from functools import lru_cache

from .textfold import WORD, fold, iter_folded_tokens

SNIPPET_CHARS = 200


@lru_cache(maxsize=16384)
def _fold_word(word: str) -> tuple[str, ...]:
    return tuple(iter_folded_tokens(fold(word)))


@lru_cache(maxsize=256)
def _locator(words: frozenset[str]) -> re.Pattern[str]:
    """A pattern finding any of ``words`` in folded text (a CJK character matches anywhere)."""
    parts = []
    for w in sorted(words, key=len, reverse=True):
        if len(w) == 1 and ord(w) >= 0x3000:
            parts.append(re.escape(w))
        else:
            parts.append(rf"(?<![^\W_]){re.escape(w)}(?![^\W_])")
    return re.compile("|".join(parts))


def _matching_spans(text: str, words: frozenset[str], start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    for m in WORD.finditer(text, max(0, start), min(len(text), end)):
        if any(tok in words for tok in _fold_word(m.group())):
            spans.append((m.start(), m.end()))
    return spans


def make_snippet(text: str, words: frozenset[str], width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around the first of ``words`` (folded tokens),
    HTML-escaped, each matching word wrapped in ``<mark>``. "" when none of the words occurs."""
    if not text or not words:
        return ""
    folded = fold(text)
    found = _locator(words).search(folded)
    if not found:
        return ""
    # Folding keeps lengths nearly equal, so look near the same relative place in the original.
    guess = int(found.start() * len(text) / max(1, len(folded)))
    spans = _matching_spans(text, words, guess - 300, guess + 300) or _matching_spans(text, words, 0, len(text))
    if not spans:
        return ""
    start = max(0, spans[0][0] - width // 3)
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
        out.append(html.escape(text[cursor:a], quote=False))
        out.append("<mark>" + html.escape(text[a:b], quote=False) + "</mark>")
        cursor = b
    out.append(html.escape(text[cursor:end], quote=False))
    if end < len(text):
        out.append("…")
    return " ".join("".join(out).split())


def opening(text: str, width: int = SNIPPET_CHARS) -> str:
    """The first ``width`` characters of ``text``, escaped, for a result whose words were not found in it."""
    if not text:
        return ""
    cut = " ".join(text[: width + 40].split())
    if len(cut) > width:
        space = cut.rfind(" ", 0, width)
        cut = cut[: space if space > width // 2 else width] + "…"
    return html.escape(cut, quote=False)
