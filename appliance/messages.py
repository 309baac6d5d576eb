"""Messages kept before anyone reads them: an import's warnings, why a file was quarantined, why
the last sync failed.

A message is an English text marked with ``N_`` and its named values (a file's name, a
size, a parser's own words). The command line and the JSON API print it in English; a
librarian's page says it in the page's language. In the catalog it is kept as JSON
(``as_json``); texts kept as plain strings before messages had values are read too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

logger = logging.getLogger(__name__)

MAX_VALUE_CHARS = 200


def N_(text: str) -> str:
    """Marks a message for the catalog of translations (pybabel finds ``N_``) and returns it as is."""
    return text


class Translations(Protocol):
    def ugettext(self, text: str) -> str: ...

    def ungettext(self, singular: str, plural: str, n: int) -> str: ...


@dataclass(frozen=True)
class Message:
    text: str  # English, marked with N_, with %(name)s-style places for the values
    params: tuple[tuple[str, object], ...] = ()
    plural: str = ""  # with a count: the English text for other counts than one (the count is ``num``)

    def __str__(self) -> str:
        try:
            return _filled(self._english(), {k: str(v) if isinstance(v, Message) else v for k, v in self.params})
        except (KeyError, ValueError, TypeError):  # values that do not fit the text (a damaged record)
            return self._english()

    def translated(self, translations: Translations, isolate: bool = False) -> str:
        """The message in the language of ``translations`` (a value that is a message too,
        translated); English when the translation cannot be filled. With ``isolate`` (for a
        language written right to left) each text value is set apart as a run of its own, so that
        a file name or a quoted value in Latin letters keeps its order."""
        values = {k: v.translated(translations, isolate) if isinstance(v, Message)
                  else _Isolated(v) if isolate and isinstance(v, str) else v for k, v in self.params}
        try:
            if self.plural:
                text = translations.ungettext(self.text, self.plural, int(values["num"]))
            else:
                text = translations.ugettext(self.text)
            return _filled(text, values)
        except (KeyError, ValueError, TypeError):
            logger.warning("the translation of %r does not take its values", self.text)
            return str(self)

    def as_json(self) -> dict:
        out = {"text": self.text, "params": {k: v.as_json() if isinstance(v, Message) else v for k, v in self.params}}
        if self.plural:
            out["plural"] = self.plural
        return out

    def _english(self) -> str:
        if self.plural and dict(self.params).get("num") != 1:
            return self.plural
        return self.text


class SaidError(Exception):
    """An error whose ``message`` is a Message: ``str(e)`` says it in English, a page translates it."""

    def __init__(self, text: str | Message, **params) -> None:
        self.message = text if isinstance(text, Message) else say(text, **params)
        super().__init__(str(self.message))


def message_of(error: BaseException) -> Message:
    """What ``error`` says, as a message (the text of an error that is not a SaidError, as it is)."""
    return error.message if isinstance(error, SaidError) else Message(str(error))


def say(text: str, **params) -> Message:
    """A message: ``text`` marked with N_ and its values (texts, numbers, or messages said inside
    it). Text values have their runs of white space made single spaces (they are often a parser's
    words, with line breaks) and are cut after MAX_VALUE_CHARS; any other value (what a damaged
    manifest held) is kept as its repr, cut the same way."""
    return Message(text, tuple((k, _value(v)) for k, v in params.items()))


def say_plural(singular: str, plural: str, num: int, **params) -> Message:
    """A message whose words depend on the count ``num``, written ``%(num)d`` as in the templates'
    ngettext (``-k say_plural:1,2`` for pybabel)."""
    return replace(say(singular, num=num, **params), plural=plural)


def load(value: object) -> Message:
    """A message kept as JSON (``as_json``), or a plain text kept before messages had values."""
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        params = value.get("params")
        params = params if isinstance(params, dict) else {}
        plural = value.get("plural")
        return Message(value["text"], tuple((k, load(v) if isinstance(v, dict) else v) for k, v in params.items()),
                       plural if isinstance(plural, str) else "")
    return Message(str(value))


class _Isolated:
    """A text value between Unicode's first-strong isolate and its end (U+2068, U+2069), written
    with %s or %r."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __str__(self) -> str:
        return f"\u2068{self.value}\u2069"

    def __repr__(self) -> str:
        return f"\u2068{self.value!r}\u2069"


def _value(value: object) -> object:
    if isinstance(value, str):
        return _one_line(value)
    if value is None or isinstance(value, (bool, int, float, Message)):
        return value
    return _one_line(repr(value))


def _one_line(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS - 1] + "…"


def _filled(text: str, values: dict) -> str:
    return text % values if values else text
