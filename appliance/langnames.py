"""Languages' own names (``vi`` -> ``Tiếng Việt``), from a table made once from CLDR.

The names come from Babel's copy of CLDR, but asking Babel at run time loads a language's whole
locale data (number and date formats, every territory name: megabytes per language) and keeps
it for good; a catalog in twenty languages cost the server more memory than its search. The
table ``ui/language-names.json`` holds just the names; ``python -m appliance.langnames``
writes it again (after a Babel upgrade), and a test checks it against Babel.
"""
from __future__ import annotations

import json
from functools import lru_cache

from ui import UI_DIR

TABLE = UI_DIR / "language-names.json"


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def language_name(code: str | None) -> str:
    """A language's own name, capitalized; the code itself when unknown ("?" when empty)."""
    if not code:
        return "?"
    return _names().get(str(code).replace("-", "_"), code)


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


if __name__ == "__main__":
    main()
