"""Guessing the language of a text, and judging a declared language tag against it.

No extra dependency: the writing system settles most languages (Arabic, Hebrew,
Japanese, Thai, ...); among Latin-script languages Vietnamese shows itself by its
letters (ơ ư ă đ and the stacked tone marks), and a few others by their most
frequent short words. When the evidence is thin the answer is ``None``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

# Character classes of the writing systems worth telling apart.
_SCRIPTS: Mapping[str, re.Pattern[str]] = {
    "latin": re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]"),
    "arabic": re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufefc]"),
    "hebrew": re.compile("[\u0590-\u05ff\ufb1d-\ufb4f]"),
    "cyrillic": re.compile("[\u0400-\u04ff]"),
    "greek": re.compile("[\u0370-\u03ff\u1f00-\u1fff]"),
    "armenian": re.compile("[\u0530-\u058f]"),
    "georgian": re.compile("[\u10a0-\u10ff]"),
    "devanagari": re.compile("[\u0900-\u097f]"),
    "bengali": re.compile("[\u0980-\u09ff]"),
    "gurmukhi": re.compile("[\u0a00-\u0a7f]"),
    "gujarati": re.compile("[\u0a80-\u0aff]"),
    "tamil": re.compile("[\u0b80-\u0bff]"),
    "telugu": re.compile("[\u0c00-\u0c7f]"),
    "kannada": re.compile("[\u0c80-\u0cff]"),
    "malayalam": re.compile("[\u0d00-\u0d7f]"),
    "sinhala": re.compile("[\u0d80-\u0dff]"),
    "thai": re.compile("[\u0e00-\u0e7f]"),
    "lao": re.compile("[\u0e80-\u0eff]"),
    "tibetan": re.compile("[\u0f00-\u0fff]"),
    "myanmar": re.compile("[\u1000-\u109f]"),
    "ethiopic": re.compile("[\u1200-\u137f]"),
    "khmer": re.compile("[\u1780-\u17ff]"),
    "hangul": re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"),
    "kana": re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]"),
    "han": re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
}

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


def _script_counts(text: str) -> dict[str, int]:
    counts = {script: len(pattern.findall(text)) for script, pattern in _SCRIPTS.items()}
    counts["cjk"] = counts.pop("han") + counts.pop("kana")  # Chinese and Japanese are told apart later
    return counts


def detect_language(text: str) -> str | None:
    """The primary language tag the text is most likely written in, or None when unsure."""
    counts = _script_counts(text)
    total = sum(counts.values())
    if total < MIN_LETTERS:
        return None
    script, count = max(counts.items(), key=lambda kv: kv[1])
    if count < total * 0.5:
        return None
    if script == "cjk":
        kana = len(_SCRIPTS["kana"].findall(text))
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
        counts = _script_counts(text)
        return detected if counts.get(declared_script, 0) < 0.1 * sum(counts.values()) else None
    if declared_script == "latin" and (detected == "vi" or declared in _FUNCTION_WORDS or declared == "vi"):
        return detected
    return None
