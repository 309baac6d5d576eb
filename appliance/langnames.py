"""Languages' own names (``vi`` -> ``Tiếng Việt``), from a table made once from CLDR.

The names come from Babel's copy of CLDR, but asking Babel at run time loads a language's whole
locale data (number and date formats, every territory name: megabytes per language) and keeps
it for good; a catalog in twenty languages cost the server more memory than its search. The
table ``ui/language-names.json`` holds just the names; ``python -m appliance.langnames``
writes it again (after a Babel upgrade), and a test checks it against Babel.
"""
from __future__ import annotations

import json
import unicodedata
from functools import lru_cache

from ui import UI_DIR

TABLE = UI_DIR / "language-names.json"
# Languages' names in the interface's languages (``{"fr": {"vietnamien": "vi", ...}}``, lowercased),
# for a librarian who types a name rather than a code; read only by the edit form.
NAMES_IN_UI = UI_DIR / "language-names-ui.json"
UI_LANGUAGES = ("vi", "en", "fr", "ar")


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def language_name(code: str | None) -> str:
    """A language's own name, capitalized; the code itself when unknown ("?" when empty)."""
    if not code:
        return "?"
    return _names().get(str(code).replace("-", "_"), code)


@lru_cache(maxsize=1)
def _codes_by_name() -> dict[str, str]:
    by_name: dict[str, str] = {}
    for names in json.loads(NAMES_IN_UI.read_text(encoding="utf-8")).values():
        by_name.update(names)
    for code, own in _names().items():  # each language's own name ("Tiếng Việt", "Français")
        if "_" not in code:
            by_name.setdefault(_key(own), code)
    return by_name


def _key(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def language_code(typed: str) -> str | None:
    """The code of the language ``typed`` names: a code of a known language (``vi``, ``en-GB``), or a
    language's name in its own tongue or in the interface's languages ("Tiếng Việt", "vietnamien",
    "Vietnamese"); None when it names no language ("xx")."""
    text = typed.strip()
    tag = text.lower().replace("_", "-")
    primary = tag.split("-")[0]
    if primary.isascii() and primary.isalpha() and 2 <= len(primary) <= 3 and primary in _names():
        return tag
    return _codes_by_name().get(_key(text))


def name_from_babel(identifier: str) -> str | None:
    from babel import Locale, UnknownLocaleError

    try:
        name = Locale.parse(identifier).get_display_name(identifier)
    except (UnknownLocaleError, ValueError, TypeError):
        return None
    return (name[:1].upper() + name[1:]) if name else None


def main() -> None:
    from babel import localedata

    names = {}
    for identifier in sorted(localedata.locale_identifiers()):
        name = name_from_babel(identifier)
        if name:
            names[identifier] = name
    text = json.dumps(names, ensure_ascii=False, indent=0, sort_keys=True)
    TABLE.write_text(text + "\n", encoding="utf-8")
    print(f"{len(names)} names written to {TABLE}")
    NAMES_IN_UI.write_text(json.dumps(names_in_ui_from_babel(), ensure_ascii=False, indent=0, sort_keys=True) + "\n",
                           encoding="utf-8")
    print(f"names in {', '.join(UI_LANGUAGES)} written to {NAMES_IN_UI}")


def names_in_ui_from_babel() -> dict[str, dict[str, str]]:
    from babel import Locale

    table = {}
    for ui in UI_LANGUAGES:
        names = Locale.parse(ui).languages  # code -> name, in that language
        table[ui] = {_key(name): code for code, name in sorted(names.items())
                     if "_" not in code and 2 <= len(code) <= 3 and code in _names()}
    return table


if __name__ == "__main__":
    main()
