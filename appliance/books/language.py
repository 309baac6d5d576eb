"""Guessing the language of a text, and judging a declared language tag against it.

No extra dependency: the writing system settles most languages (Arabic, Hebrew,
Japanese, Thai, ...); among Latin-script languages Vietnamese shows itself by its
letters (ơ ư ă đ and the stacked tone marks), and a few others by their most
frequent short words. When the evidence is thin the answer is ``None``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

# The blocks of the writing systems worth telling apart (first and last code point).
_SCRIPT_RANGES: Mapping[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x00D6), (0x00D8, 0x00F6), (0x00F8, 0x024F), (0x1E00, 0x1EFF)),
    "arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFC)),
    "hebrew": ((0x0590, 0x05FF), (0xFB1D, 0xFB4F)),
    "cyrillic": ((0x0400, 0x04FF),),
    "greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "armenian": ((0x0530, 0x058F),),
    "georgian": ((0x10A0, 0x10FF),),
    "devanagari": ((0x0900, 0x097F),),
    "bengali": ((0x0980, 0x09FF),),
    "gurmukhi": ((0x0A00, 0x0A7F),),
    "gujarati": ((0x0A80, 0x0AFF),),
    "tamil": ((0x0B80, 0x0BFF),),
    "telugu": ((0x0C00, 0x0C7F),),
    "kannada": ((0x0C80, 0x0CFF),),
    "malayalam": ((0x0D00, 0x0D7F),),
    "sinhala": ((0x0D80, 0x0DFF),),
    "thai": ((0x0E00, 0x0E7F),),
    "lao": ((0x0E80, 0x0EFF),),
    "tibetan": ((0x0F00, 0x0FFF),),
    "myanmar": ((0x1000, 0x109F),),
    "ethiopic": ((0x1200, 0x137F),),
    "khmer": ((0x1780, 0x17FF),),
    "hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
    "kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "han": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)),
}
_SCRIPT_NAMES = tuple(_SCRIPT_RANGES)


def _script_table() -> np.ndarray:
    """For each code point of the Basic Multilingual Plane, 1 + the index of its script in
    ``_SCRIPT_NAMES``, or 0 (all the scripts above lie in that plane)."""
    table = np.zeros(0x10000, dtype=np.uint8)
    for n, name in enumerate(_SCRIPT_NAMES, start=1):
        for first, last in _SCRIPT_RANGES[name]:
            table[first:last + 1] = n
    return table


_SCRIPT_OF = _script_table()

# Scripts used by one language (for this purpose).
_SCRIPT_LANGUAGE = {
    "hebrew": "he", "greek": "el", "armenian": "hy", "georgian": "ka", "bengali": "bn",
    "gurmukhi": "pa", "gujarati": "gu", "tamil": "ta", "telugu": "te", "kannada": "kn",
    "malayalam": "ml", "sinhala": "si", "thai": "th", "lao": "lo", "tibetan": "bo",
    "myanmar": "my", "ethiopic": "am", "khmer": "km", "hangul": "ko", "devanagari": "hi",
}

# Letters only Vietnamese uses among Latin-script languages (NFC forms).
_VIETNAMESE_LETTERS = re.compile("[ăđơưĂĐƠƯ\u1ea0-\u1ef9]")
_PERSIAN_LETTERS = re.compile("[\u067e\u0686\u0698\u06af\u06a9\u06cc]")
_URDU_LETTERS = re.compile("[\u0679\u0688\u0691\u06ba\u06d2]")
_UKRAINIAN_LETTERS = re.compile("[іїєґІЇЄҐ]")
_WORD = re.compile(r"[^\W\d_]+")

# The most frequent short words of some Latin-script languages.
_FUNCTION_WORDS: Mapping[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the of and to in is that it was for on with as his he you be at by this had not are but "
              "from or have an they which she her we were been their would there what when",
        "fr": "le la les des du et est un une que qui dans pour pas au aux ce cette il elle ne se sur "
              "sont avec par plus son sa ses nous vous ils mais ou était être",
        "es": "el los las del y que en un una es por con no se para al lo como su sus pero más este "
              "esta fue muy",
        "de": "der die das und ist nicht ein eine zu den dem mit sich des auf für auch es im von dass "
              "wie war ich sie",
        "it": "il lo di che è un una per non con del della sono si gli nel alla anche come più ma",
        "pt": "o os do da dos das que em um uma não para com por mais ao no na é se foi ele ela",
        "nl": "het een en van is dat niet op te zijn met voor als aan er maar ook dit bij ik",
        "id": "yang dan di ini itu dengan untuk dari dalam tidak akan ada pada ke adalah saya kami "
              "mereka juga",
        "hmn": "thiab ntawm hauv cov tus lub yog kuv koj nws peb lawv tsis muaj los mus rau nrog ua "
               "tau txog",
    }.items()
}

# The script each known language is written in, to tell a plain contradiction.
_LATIN = (
    "en fr es de it pt nl id ms vi hmn tl sw pl cs sk ro hu tr fi sv da no nb nn is ga cy ca eu "
    "gl hr sl lt lv et sq af zu xh yo ha ig so mg eo la"
)
_LANGUAGE_SCRIPT: dict[str, str] = {code: "latin" for code in _LATIN.split()}
_LANGUAGE_SCRIPT.update({code: "arabic" for code in ("ar", "fa", "ur", "ps", "ug")})
_LANGUAGE_SCRIPT.update({code: "cyrillic" for code in ("ru", "uk", "bg", "sr", "mk", "be", "kk", "ky", "tg")})
_LANGUAGE_SCRIPT.update({code: "devanagari" for code in ("hi", "mr", "ne", "sa")})
_LANGUAGE_SCRIPT.update({code: "hebrew" for code in ("he", "yi")})
_LANGUAGE_SCRIPT.update({"ja": "cjk", "zh": "cjk", "ko": "hangul", "am": "ethiopic", "ti": "ethiopic"})
_LANGUAGE_SCRIPT.update({lang: script for script, lang in _SCRIPT_LANGUAGE.items() if lang not in _LANGUAGE_SCRIPT})

# Names people write instead of a tag.
_LANGUAGE_NAMES = {
    "english": "en", "french": "fr", "français": "fr", "francais": "fr", "vietnamese": "vi",
    "tiếng việt": "vi", "tieng viet": "vi", "arabic": "ar", "العربية": "ar", "japanese": "ja",
    "chinese": "zh", "spanish": "es", "german": "de", "hebrew": "he", "hmong": "hmn",
    # three-letter codes for languages that have a two-letter one
    "eng": "en", "fre": "fr", "fra": "fr", "vie": "vi", "ara": "ar", "jpn": "ja", "zho": "zh",
    "chi": "zh", "spa": "es", "ger": "de", "deu": "de", "heb": "he", "rus": "ru", "por": "pt",
}
_NOT_A_LANGUAGE = {"", "und", "mul", "zxx", "mis", "unknown", "none"}
_TAG = re.compile(r"^[a-z]{2,8}$")

MIN_LETTERS = 40


def primary_language(tag: str) -> str:
    """The lowercase primary subtag of a language tag or name, or "" when it names no language.

    ``primary_language("en-US") == "en"``, ``primary_language("Vietnamese") == "vi"``.
    """
    text = " ".join(tag.split()).lower()
    if text in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[text]
    primary = re.split(r"[-_\s]", text, maxsplit=1)[0]
    primary = _LANGUAGE_NAMES.get(primary, primary)
    if primary in _NOT_A_LANGUAGE or not _TAG.match(primary):
        return ""
    return primary


def _script_counts(text: str) -> tuple[dict[str, int], int]:
    """Letters of each script in ``text``, Chinese and Japanese together as "cjk", and the kana
    among them apart (to tell the two later): one table look-up per character."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    found = np.bincount(_SCRIPT_OF[points[points < 0x10000]], minlength=len(_SCRIPT_NAMES) + 1)
    counts = {name: int(found[n]) for n, name in enumerate(_SCRIPT_NAMES, start=1)}
    kana = counts.pop("kana")
    counts["cjk"] = counts.pop("han") + kana
    return counts, kana


def detect_language(text: str) -> str | None:
    """The primary language tag the text is most likely written in, or None when unsure."""
    counts, kana = _script_counts(text)
    total = sum(counts.values())
    if total < MIN_LETTERS:
        return None
    script, count = max(counts.items(), key=lambda kv: kv[1])
    if count < total * 0.5:
        return None
    if script == "cjk":
        return "ja" if kana >= count * 0.05 else "zh"
    if script in _SCRIPT_LANGUAGE:
        return _SCRIPT_LANGUAGE[script]
    if script == "arabic":
        if len(_URDU_LETTERS.findall(text)) >= count * 0.01:
            return "ur"
        return "fa" if len(_PERSIAN_LETTERS.findall(text)) >= count * 0.02 else "ar"
    if script == "cyrillic":
        return "uk" if len(_UKRAINIAN_LETTERS.findall(text)) >= count * 0.01 else "ru"
    return _latin_language(text, count)


def _latin_language(text: str, letters: int) -> str | None:
    if len(_VIETNAMESE_LETTERS.findall(text)) >= letters * 0.05:
        return "vi"
    words = _WORD.findall(text.lower())
    if len(words) < 10:
        return None
    scores = sorted(
        ((sum(1 for w in words if w in vocabulary), lang) for lang, vocabulary in _FUNCTION_WORDS.items()),
        reverse=True,
    )
    (best, lang), (second, _) = scores[0], scores[1]
    if best >= len(words) * 0.08 and best >= second * 1.3:
        return lang
    return None


def language_of_text(declared: str, text: str) -> str | None:
    """The language the text is plainly written in when that is not ``declared`` (a primary tag), else None.

    Only a language whose writing is known here can be contradicted: by text in
    another script with hardly any of the declared script in it (under 10 %), or,
    for Latin-script languages with a word list here (or Vietnamese), by another
    Latin-script language recognized with confidence.
    """
    detected = detect_language(text)
    declared_script = _LANGUAGE_SCRIPT.get(declared)
    if detected is None or declared_script is None or detected == declared:
        return None
    detected_script = _LANGUAGE_SCRIPT.get(detected)
    if detected_script is None:
        return None
    if declared_script != detected_script:
        counts, _ = _script_counts(text)
        return detected if counts.get(declared_script, 0) < 0.1 * sum(counts.values()) else None
    if declared_script == "latin" and (detected == "vi" or declared in _FUNCTION_WORDS or declared == "vi"):
        return detected
    return None
