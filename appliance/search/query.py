"""What a reader typed, split into clauses of folded words (``parse_query``).

``"..."`` is a phrase and ``-word`` leaves out books with that word; nothing else in a query is
syntax, so no input can make the search fail.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from appliance.textfold import clean, fold, iter_folded_tokens

__all__ = ["ParsedQuery", "parse_query"]

MAX_QUERY_CHARS = 500
MAX_QUERY_CLAUSES = 12


@dataclass(frozen=True)
class ParsedQuery:
    """Clauses of folded tokens; a clause of more than one token is a phrase."""

    required: tuple[tuple[str, ...], ...]
    excluded: tuple[tuple[str, ...], ...] = ()

    def words(self) -> set[str]:
        return {t for clause in self.required for t in clause}


_QUOTED = re.compile(r'"([^"]*)"?')


def parse_query(q: str) -> ParsedQuery:
    """Split what a reader typed into clauses. Never raises: anything unusual is treated as text."""
    text = clean(str(q or ""))[:MAX_QUERY_CHARS]
    required: list[tuple[str, ...]] = []
    excluded: list[tuple[str, ...]] = []

    def add(chunk: str, negate: bool) -> None:
        toks = tuple(iter_folded_tokens(fold(chunk)))
        if not toks:
            return
        target = excluded if negate else required
        if toks not in target:
            target.append(toks)

    pos = 0
    for m in _QUOTED.finditer(text):
        _add_words(text[pos:m.start()], add)
        negate = m.start() > 0 and text[m.start() - 1] == "-" and (m.start() == 1 or text[m.start() - 2].isspace())
        add(m.group(1), negate)
        pos = m.end()
    _add_words(text[pos:], add)
    return ParsedQuery(tuple(required[:MAX_QUERY_CLAUSES]), tuple(excluded[:MAX_QUERY_CLAUSES]))


def _add_words(chunk: str, add: Callable[[str, bool], None]) -> None:
    for word in chunk.split():
        negate = word.startswith("-") and len(word) > 1
        add(word[1:] if negate else word, negate)
