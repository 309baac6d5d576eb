"""Plain text out of (X)HTML documents, read with a forgiving HTML parser.

The parser streams events into small collectors instead of building a tree, so a
large chapter costs little memory. Text is NFC-normalized, paragraphs are separated
by one newline, and whitespace inside a paragraph is collapsed to single spaces.
``nesting_depth`` tells how deeply a document nests its elements without building a tree (the
sanitizer's parser takes time that grows with the square of the depth).
"""
from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from dataclasses import dataclass

from lxml import etree

_BLOCKS = frozenset(
    "address article aside blockquote body br caption dd details div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody td tfoot "
    "th thead tr ul".split()
)
_SKIPPED = frozenset("head title script style noscript template rt rp".split())
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_WIDE = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
# A line break between two East Asian characters is not a space (CSS segment-break rules).
_WIDE_BREAK = re.compile(f"(?<=[{_WIDE}])[ \t\r]*\n\\s*(?=[{_WIDE}])")

_TAG = re.compile(r"<(/?[A-Za-z][^\s/<>]*)[^<>]*?(/?)>")  # start and end tags: (name, "/" for <x/>)
_VOID = frozenset("area base br col embed hr img image input link meta param source track wbr".split())
_SIBLINGS = frozenset("a p li dt dd tr td th option".split())  # a second one closes the first
MAX_NESTING = 256  # elements one inside the other; real books nest a few dozen at most

_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def collapse(text: str) -> str:
    """One line: NFC, invisible characters removed, runs of whitespace made one space."""
    text = text.replace("\u00ad", "").replace("\ufeff", "")  # soft hyphens, stray byte order marks
    if "\n" in text:
        text = _WIDE_BREAK.sub("", text)
    return unicodedata.normalize("NFC", " ".join(text.split()))


def decode_markup(data: bytes) -> tuple[str, bool]:
    """Bytes of an (X)HTML or XML document as text, and whether they decoded cleanly.

    A byte order mark wins; then UTF-8 (what EPUB requires, and what files that
    declare something else often really are); then the declared encoding.
    """
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                       (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(codec, "replace"), True
    head = data[:1024]
    found = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    declared = found.group(1).decode("ascii").lower() if found else "utf-8"
    try:
        declared = codecs.lookup(declared).name
    except LookupError:
        declared = "utf-8"
    tried = [declared] if declared.startswith("utf-16") else ["utf-8", declared]
    for codec in tried:
        try:
            return data.decode(codec), True
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace"), False


def nesting_depth(markup: str, stop: int = MAX_NESTING) -> int:
    """How many elements deep ``markup`` nests as an HTML parser reads it, from its tags alone (the
    count stops past ``stop``): an end tag closes the innermost open element it names and those
    inside it, one that names none is ignored, and elements that take no end tag do not count."""
    open_: list[str] = []
    counts: dict[str, int] = {}  # open elements by name
    deepest = 0
    for name, closed in _TAG.findall(_without_comments(markup)):
        name = name.lower()
        if name[0] == "/":
            name = name[1:]
            if counts.get(name):
                while True:
                    popped = open_.pop()
                    counts[popped] -= 1
                    if popped == name:
                        break
        elif name in _VOID or (open_ and open_[-1] == name and name in _SIBLINGS):
            continue
        elif closed and (":" in name or counts.get("svg") or counts.get("math")):
            continue
        else:
            open_.append(name)
            counts[name] = counts.get(name, 0) + 1
            if len(open_) > deepest:
                deepest = len(open_)
                if deepest > stop:
                    break
    return deepest


def _without_comments(markup: str) -> str:
    """``markup`` without its comments (an unclosed one runs to the end, as in HTML)."""
    parts, start = [], 0
    while (begin := markup.find("<!--", start)) >= 0:
        parts.append(markup[start:begin])
        end = markup.find("-->", begin + 4)
        if end < 0:
            return "".join(parts)
        start = end + 3
    parts.append(markup[start:])
    return "".join(parts)


@functools.lru_cache(maxsize=2048)
def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


class _TextCollector:
    """Parser target gathering paragraphs and the first heading."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.heading = ""
        self._buffer: list[str] = []
        self._heading_buffer: list[str] | None = None
        self._skip = 0
        self._pre = 0

    def _flush(self) -> None:
        if not self._buffer:
            return
        line = collapse("".join(self._buffer))
        if line:
            self.paragraphs.append(line)
        self._buffer = []

    def start(self, tag: str, attrib: dict) -> None:
        name = _local(tag)
        if name in _SKIPPED:
            self._skip += 1
        elif name in _BLOCKS:
            self._flush()
            if name == "pre":
                self._pre += 1
            elif name in _HEADINGS and not self.heading and self._heading_buffer is None:
                self._heading_buffer = []

    def end(self, tag: str) -> None:
        name = _local(tag)
        if name in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif name in _BLOCKS:
            self._flush()
            if name == "pre":
                self._pre = max(0, self._pre - 1)
            elif name in _HEADINGS and self._heading_buffer is not None:
                self.heading = collapse("".join(self._heading_buffer))
                self._heading_buffer = None

    def data(self, text: str) -> None:
        if self._skip:
            return
        if self._heading_buffer is not None:
            self._heading_buffer.append(text)
        if self._pre and "\n" in text:
            first, *rest = text.split("\n")
            self._buffer.append(first)
            for line in rest:
                self._flush()
                self._buffer.append(line)
        else:
            self._buffer.append(text)

    def close(self) -> _TextCollector:
        self._flush()
        return self


class _LinkCollector:
    """Parser target gathering (href, text) of links inside <nav> elements.

    Links inside a table-of-contents nav (``epub:type="toc"`` or ``role="doc-toc"``)
    are kept apart from links in other navs, which serve only when there is no toc nav.
    """

    def __init__(self) -> None:
        self.toc_links: list[tuple[str, str]] = []
        self.other_links: list[tuple[str, str]] = []
        self._navs: list[bool] = []  # stack: is this nav a toc?
        self._link: tuple[str, list[str]] | None = None

    def start(self, tag: str, attrib: dict) -> None:
        name = _local(tag)
        if name == "nav":
            kinds = " ".join(v for k, v in attrib.items() if _local(k) in ("type", "role")).lower().split()
            self._navs.append("toc" in kinds or "doc-toc" in kinds)
        elif name == "a" and self._navs and attrib.get("href"):
            self._link = (attrib["href"], [])

    def end(self, tag: str) -> None:
        name = _local(tag)
        if name == "nav" and self._navs:
            self._navs.pop()
        elif name == "a" and self._link is not None:
            href, parts = self._link
            target = self.toc_links if any(self._navs) else self.other_links
            target.append((href, collapse("".join(parts))))
            self._link = None

    def data(self, text: str) -> None:
        if self._link is not None:
            self._link[1].append(text)

    def close(self) -> _LinkCollector:
        return self


def _feed(text: str, target):
    parser = etree.HTMLParser(target=target, no_network=True, recover=True)
    parser.feed(text)
    return parser.close()


@dataclass(frozen=True)
class DocumentText:
    text: str  # paragraphs separated by "\n"
    heading: str  # the first h1-h6, or ""
    clean_encoding: bool
    depth: int = 0  # nesting_depth of the markup (counted up to MAX_NESTING + 1)


def document_text(data: bytes) -> DocumentText:
    """Plain text and first heading of an (X)HTML document given as bytes."""
    markup, clean = decode_markup(data)
    if not markup.strip():
        return DocumentText("", "", clean)
    collected: _TextCollector = _feed(markup, _TextCollector())
    return DocumentText("\n".join(collected.paragraphs), collected.heading, clean, nesting_depth(markup))


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment (e.g. a book description), paragraphs on their own lines."""
    if not markup.strip():
        return ""
    return "\n".join(_feed(markup, _TextCollector()).paragraphs)


def nav_links(data: bytes) -> list[tuple[str, str]]:
    """(href, label) of the table-of-contents links in an EPUB 3 navigation document."""
    markup, _clean = decode_markup(data)
    if not markup.strip():
        return []
    collected: _LinkCollector = _feed(markup, _LinkCollector())
    return collected.toc_links or collected.other_links
