"""Folding text so that searches match what people type on a phone keyboard.

``fold`` makes the comparable form of a text; the search index, its queries and
the catalog's SQLite fallback all use it, so they agree on what matches.

What folding does, in order:

1. Compatibility forms that only change the look of a letter become the plain
   letter: Latin ligatures, full-width and half-width forms, Arabic
   presentation forms (common in EPUBs converted from PDF).
2. NFC normalization, then Unicode case folding (``ß`` -> ``ss``, ``İ`` -> ``i``).
3. Accents and other diacritics of Latin, Greek and Cyrillic letters are removed:
   ``thư viện`` -> ``thu vien``, ``élève`` -> ``eleve``. Vietnamese ``đ`` (which
   Unicode does not decompose) becomes ``d``; so do a few other letters with a
   stroke (``ł ø ħ``); ``œ æ`` become ``oe ae``.
4. Arabic: tashkeel (harakat, tanween, shadda, sukun, superscript alef, Quranic
   marks) and tatweel are removed; hamza and madda carried on a letter are removed,
   so ``أ إ آ`` and alef wasla ``ٱ`` become ``ا``, ``ؤ`` becomes ``و``, ``ئ`` becomes
   ``ي``. Final alef maksura ``ى`` becomes ``ي`` and ta marbuta ``ة`` becomes ``ه``:
   the two are written either way in everyday text, and folding them is the usual
   choice for Arabic search (it merges a few unrelated word pairs, which is the
   price of finding what people type). The Persian ``ی`` and ``ک`` become the
   Arabic ``ي`` and ``ك``. A lone hamza ``ء`` stays: it is a letter.
5. Hebrew points (niqqud and cantillation) are removed; Hebrew letters stay.
6. Marks that are part of spelling stay: Devanagari and the other Indic scripts,
   Thai, Lao, Khmer, Myanmar, Tibetan vowel signs and viramas, and the Japanese
   voiced sound marks (``が`` stays ``が``). CJK, kana and Hangul are unchanged.
7. Digits of every script become ASCII digits (``١٩٨٤`` -> ``1984``).
8. Invisible format characters are removed (soft hyphen, zero-width joiners,
   byte order mark), so a word hyphenated for layout still matches.

The result is NFC again (so kana and Hangul are composed).

``tokens`` splits folded text into words: runs of letters, digits and marks.
Han characters and kana are single-character tokens (those scripts do not put
spaces between words; a word typed in a query becomes a phrase of its
characters). Thai, Lao, Khmer and Myanmar are not segmented: a run of them is
one token. Nothing is stemmed and no word is dropped.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

# Diacritic blocks used on Latin, Greek and Cyrillic letters.
_LATIN_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# Hebrew points and cantillation.
_HEBREW_MARKS = "\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
# Arabic tashkeel, Quranic annotation, hamza/madda marks (0653-0655), superscript alef, tatweel.
_ARABIC_MARKS = "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed\u0640"
# Invisible format characters: soft hyphen, zero-width space/non-joiner/joiner, marks, word joiner, BOM.
_INVISIBLE = "\u00ad\u200b-\u200f\u2060\ufeff"

_STRIP = re.compile(f"[{_LATIN_MARKS}{_HEBREW_MARKS}{_ARABIC_MARKS}{_INVISIBLE}]+")

# Letters that Unicode does not decompose but that people type without their stroke.
_LETTERS = {
    "đ": "d", "ð": "d", "ł": "l", "ø": "o", "ħ": "h", "ı": "i", "ŧ": "t", "ƀ": "b", "ɨ": "i", "ʉ": "u",
    "œ": "oe", "æ": "ae",
    "\u0671": "\u0627",  # alef wasla -> alef
    "\u0649": "\u064a",  # alef maksura -> yeh
    "\u0629": "\u0647",  # ta marbuta -> heh
    "\u06cc": "\u064a",  # Persian yeh -> Arabic yeh
    "\u06a9": "\u0643",  # keheh -> kaf
}


def _scan_bmp() -> tuple[dict[int, str], str]:
    """Digits of every script (to ASCII), and a regex class body of every combining mark, in the BMP."""
    digits: dict[int, str] = {}
    ranges: list[tuple[int, int]] = []
    for cp in range(0x80, 0x10000):
        category = unicodedata.category(chr(cp))
        if category == "Nd":
            digits[cp] = str(unicodedata.decimal(chr(cp)))
        elif category[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    marks = "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)
    return digits, marks


_DIGITS, _MARKS = _scan_bmp()
_TABLE = str.maketrans({**{ord(k): v for k, v in _LETTERS.items()}, **_DIGITS})

# Characters whose compatibility form is only a different look of the same letters.
_COMPAT = re.compile("[\ufb00-\ufdff\ufe70-\ufeff\uff00-\uffef]+")

# Han (incl. extension A, compatibility ideographs, supplementary planes), hiragana, katakana.
_CJK_CHARS = "\u3005\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf" \
             "\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# A character that is a word by itself.
CJK_CHAR = re.compile(f"[{_CJK_CHARS}]")
# A word: a CJK character (with any following marks such as the voiced sound mark),
# or a run of other word characters and marks.
WORD = re.compile(f"[{_CJK_CHARS}][{_MARKS}]*|(?:(?![{_CJK_CHARS}])[\\w{_MARKS}])+")

# The longest token kept; longer runs (base64 junk, URLs without spaces) are cut.
MAX_TOKEN = 64


def fold(text: str) -> str:
    """The comparable form of ``text``: case, accents, Arabic spelling variants folded (see module doc)."""
    if not text:
        return ""
    if _COMPAT.search(text):
        text = _COMPAT.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    text = unicodedata.normalize("NFC", text).casefold()
    text = unicodedata.normalize("NFD", text)
    text = _STRIP.sub("", text)
    text = text.translate(_TABLE)
    return unicodedata.normalize("NFC", text)


# Folding character by character, keeping where each folded character came from (for snippets: a
# word found in folded text is marked in the original). It gives what ``fold`` gives for text made
# only of characters whose folding does not depend on their neighbours and is at most
# _MAPPED_MAX characters long without a mark left in it: not Hangul jamo or half-width kana
# (composed with what follows), not the Indic and South-East Asian vowel signs and viramas, nor
# the kana voiced sound marks, ``fold`` keeps (a mark left in may compose with what comes
# before). The table is a NumPy array indexed by the text's UTF-32 code points: many times faster
# than folding the text or str.translate.
_MAPPED_RANGES = ((0x0000, 0x1100), (0x1200, 0x2E80), (0x3000, 0x3100), (0x31F0, 0x3200), (0x3400, 0x4DC0),
                  (0x4E00, 0xA000), (0xA640, 0xA800), (0xE000, 0xFB00), (0xFB00, 0xFF61), (0xFFE0, 0x10000))
_MAPPED_MAX = 3
_UNMAPPED = 255


@lru_cache(maxsize=1)
def _mapped_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(length of each BMP character's folding, or _UNMAPPED; the first of its code points (a
    table of its own: taking from a column of the next is several times slower); its code points,
    padded with 0). The entry past the BMP is _UNMAPPED and stands for every code point above."""
    lengths = np.full(0x10001, _UNMAPPED, dtype=np.uint8)
    points = np.zeros((0x10001, _MAPPED_MAX), dtype=np.uint32)
    for low, high in _MAPPED_RANGES:
        for cp in range(low, high):
            if 0xD800 <= cp < 0xE000:
                continue
            folded = fold(chr(cp))
            if len(folded) > _MAPPED_MAX or any(unicodedata.category(c)[0] == "M" for c in folded):
                continue
            lengths[cp] = len(folded)
            points[cp, :len(folded)] = [ord(c) for c in folded]
    return lengths, np.ascontiguousarray(points[:, 0]), points


def fold_mapped(text: str) -> tuple[str, np.ndarray | None] | None:
    """``fold(text)`` with, for each of its characters and one past its end, the index in
    ``text`` of the character it came from (None when every character folded to exactly one, so
    that indexes are the same); None when ``text`` holds a character this cannot fold alone."""
    lengths, first, points = _mapped_tables()
    code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    counts = np.take(lengths, code_points, mode="clip")
    most = counts.max(initial=1)
    if most == _UNMAPPED:
        return None
    if most == 1 and counts.min(initial=1) == 1:
        return np.take(first, code_points, mode="clip").tobytes().decode("utf-32-le"), None
    folded = np.take(points, code_points, axis=0, mode="clip")[np.arange(_MAPPED_MAX) < counts[:, None]]
    origin = np.repeat(np.arange(len(code_points)), counts)
    return folded.tobytes().decode("utf-32-le"), np.append(origin, len(code_points))


def iter_folded_tokens(folded: str) -> Iterator[str]:
    """The words of text that is already folded."""
    for m in WORD.finditer(folded):
        word = m.group()
        if word[0] == "_" and word.strip("_") == "":
            continue
        yield word[:MAX_TOKEN]


def tokens(text: str) -> list[str]:
    """Folded words of ``text``, in order; nothing stemmed, nothing dropped."""
    return list(iter_folded_tokens(fold(text)))


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def clean(text: str) -> str:
    """``text`` with control characters (other than tab and line breaks) and lone surrogates replaced by spaces."""
    return _CONTROL.sub(" ", text) if text else ""
