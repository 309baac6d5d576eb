"""A book's chapter HTML made safe to show on the box's pages: sanitized, links and pictures rewritten.

Chapters come from EPUBs nobody here wrote. ``clean_chapter`` keeps the body of a chapter and passes
it through nh3 with a short list of tags and attributes: no script, no event handler, no form, no
frame, no remote picture or style sheet, and only a few harmless CSS properties in ``style``.
Pictures are rewritten to the box's own addresses (``/books/<id>/file/<path in the EPUB>``), links to
other chapters to the reader's pages, and ids get a prefix so a book cannot clobber the page's own.
A chapter nested deeper than ``MAX_NESTING`` elements (nh3's time grows with the square of the depth:
7 s for 60,000 nested divs) is shown as its plain text instead, in paragraphs.
``split_pages`` cuts a long chapter between its top-level blocks.
"""
from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import nh3
from lxml import etree
from lxml import html as lxml_html

from appliance.books.htmltext import MAX_NESTING, decode_markup, html_to_text, nesting_depth

ID_PREFIX = "b-"
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv"})

TAGS = {
    "a", "abbr", "address", "article", "aside", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center",
    "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "i", "img", "ins", "kbd", "li", "mark", "nav",
    "ol", "p", "pre", "q", "rb", "rp", "rt", "rtc", "ruby", "s", "samp", "section", "small", "span", "strike",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var",
    "wbr",
}
COMMON = {"id", "lang", "dir", "title", "style"}
ATTRIBUTES = {
    "*": COMMON,
    "a": COMMON | {"href"},
    "img": COMMON | {"src", "alt", "width", "height"},
    "td": COMMON | {"colspan", "rowspan"},
    "th": COMMON | {"colspan", "rowspan", "scope"},
    "col": COMMON | {"span"},
    "ol": COMMON | {"start", "reversed", "type"},
    "time": COMMON | {"datetime"},
}
STYLE_PROPERTIES = {
    "text-align", "text-indent", "font-style", "font-weight", "font-variant", "text-decoration",
    "text-transform", "vertical-align", "margin-left", "margin-right", "margin-top", "margin-bottom",
    "padding-left", "padding-right", "list-style-type", "direction", "unicode-bidi", "writing-mode",
    "text-combine-upright", "text-orientation", "white-space", "letter-spacing",
}
REMOVE_WITH_CONTENT = {"script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math",
                       "head", "title", "audio", "video", "canvas", "form", "button", "select", "textarea"}
_BODY_START = re.compile(r"<body\b[^<>]*>", re.I)
_BODY_END = re.compile(r"</body\s*>", re.I)
_VERTICAL = re.compile(rb"vertical-rl|vertical-lr")
_STYLESHEET = re.compile(rb"<link\b[^>]*href\s*=\s*[\"']([^\"']+\.css)[\"']", re.I)


def chapter_body(raw: bytes) -> str:
    """The inner HTML of a chapter document's body (the whole text when it has no body element)."""
    text, _xml = decode_markup(raw)
    start = _BODY_START.search(text)
    if start is None:
        return text
    end = max((found.start() for found in _BODY_END.finditer(text, start.end())), default=None)  # the last one
    return text[start.end():end] if end is not None else text


def stylesheets(raw: bytes) -> list[str]:
    """Hrefs of the style sheets a chapter links to (to see whether the book is set vertically)."""
    return [m.group(1).decode("utf-8", "replace") for m in _STYLESHEET.finditer(raw[:20_000])]


def looks_vertical(*texts: bytes) -> bool:
    return any(_VERTICAL.search(t) for t in texts if t)


def resolve(base_href: str, link: str) -> tuple[str, str] | None:
    """(path inside the EPUB, fragment) of a relative link in the document at ``base_href``."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or link.startswith("//"):
        return None
    path = unquote(parts.path).replace("\\", "/")
    if not path:
        return base_href, parts.fragment
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(base_href), path))
    if joined.startswith("../") or joined == "..":
        return None
    return joined.lstrip("/"), parts.fragment


def clean_chapter(body_html: str, *, base_href: str, picture_url: Callable[[str], str | None],
                  chapter_url: Callable[[str], str | None], allow_data_images: bool = False) -> str:
    """Sanitize a chapter body; ``picture_url`` and ``chapter_url`` map EPUB paths to box addresses."""
    if nesting_depth(body_html) > MAX_NESTING:
        return flattened(body_html)

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "src" and tag == "img":
            if value.startswith("data:"):
                return value if allow_data_images and value.startswith("data:image/") else None
            target = resolve(base_href, value)
            return picture_url(target[0]) if target else None
        if attribute == "href" and tag == "a":
            if value.startswith("#"):
                return "#" + ID_PREFIX + value[1:]
            lowered = value.lower()
            if lowered.startswith(("http://", "https://")):
                return value
            target = resolve(base_href, value)
            if target is None:
                return None
            url = chapter_url(target[0])
            if url is None:
                return None
            return url + (f"#{ID_PREFIX}{target[1]}" if target[1] else "")
        return value

    return nh3.clean(
        body_html,
        tags=TAGS,
        clean_content_tags=REMOVE_WITH_CONTENT,
        attributes=ATTRIBUTES,
        attribute_filter=attribute_filter,
        url_schemes={"http", "https", "data"},
        url_relative="pass_through",
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        filter_style_properties=STYLE_PROPERTIES,
        id_prefix=ID_PREFIX,
    )


def flattened(body_html: str) -> str:
    """The plain text of a chapter body, a paragraph to a line, as safe HTML (no element of the book)."""
    return "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in html_to_text(body_html).split("\n") if line)


def split_pages(fragment: str, max_bytes: int) -> list[str]:
    """Cut sanitized HTML into pages of about ``max_bytes``, only between blocks."""
    if len(fragment.encode("utf-8")) <= max_bytes:
        return [fragment]
    root = lxml_html.fragment_fromstring(fragment, create_parent="div")
    pages: list[str] = []
    current: list[str] = []
    size = 0

    def emit(piece: str) -> None:
        nonlocal size
        length = len(piece.encode("utf-8"))
        if current and size + length > max_bytes:
            pages.append("".join(current))
            current.clear()
            size = 0
        current.append(piece)
        size += length

    def walk(element) -> None:
        if element.text and element.text.strip():
            emit(f"<p>{_escape(element.text)}</p>")
        for child in element:
            piece = etree.tostring(child, encoding="unicode", method="html", with_tail=False)
            if len(piece.encode("utf-8")) > max_bytes and child.tag in ("div", "section", "article", "body",
                                                                          "main", "blockquote") and len(child):
                walk(child)
            else:
                emit(piece)
            if child.tail and child.tail.strip():
                emit(f"<p>{_escape(child.tail)}</p>")

    walk(root)
    if current:
        pages.append("".join(current))
    return pages or [fragment]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
