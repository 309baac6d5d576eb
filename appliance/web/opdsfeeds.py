"""OPDS feeds of the catalog: OPDS 1.2 (Atom XML), OPDS 2.0 (JSON) and the OpenSearch description.

Pure builders: they take plain values (books as dicts from ``catalog.books_details``, links as
``Link``) and return bytes or dicts; the views in ``appliance.web.views.public.opds`` query the catalog and
choose the links. XML is built with lxml, so no title or name from a book can break a feed.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

ATOM = "http://www.w3.org/2005/Atom"
OPDS_NS = "http://opds-spec.org/2010/catalog"
DC = "http://purl.org/dc/terms/"
THR = "http://purl.org/syndication/thread/1.0"
OPENSEARCH = "http://a9.com/-/spec/opensearch/1.1/"
NSMAP = {None: ATOM, "opds": OPDS_NS, "dc": DC, "thr": THR, "opensearch": OPENSEARCH}

NAVIGATION = "application/atom+xml;profile=opds-catalog;kind=navigation"
ACQUISITION = "application/atom+xml;profile=opds-catalog;kind=acquisition"
OPENSEARCH_TYPE = "application/opensearchdescription+xml"
OPDS2 = "application/opds+json"
EPUB = "application/epub+zip"
OPEN_ACCESS = "http://opds-spec.org/acquisition/open-access"
IMAGE = "http://opds-spec.org/image"
THUMBNAIL = "http://opds-spec.org/image/thumbnail"
FACET = "http://opds-spec.org/facet"
ID_PREFIX = "urn:village-library:"


@dataclass(frozen=True)
class Link:
    rel: str
    href: str
    type: str
    title: str | None = None
    facet_group: str | None = None
    active: bool = False
    count: int | None = None


@dataclass(frozen=True)
class NavEntry:
    key: str  # stable part of the entry id
    title: str
    href: str
    type: str
    content: str = ""
    count: int | None = None


@dataclass(frozen=True)
class BookLinks:
    """Where one book's files live on this box."""

    page: str
    epub: str
    offline_html: str | None
    cover: str | None
    cover_type: str | None
    thumbnail: str | None


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sub(parent, tag: str, text: str | None = None, ns: str = ATOM, **attrs) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}", {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        element.text = _xml_text(text)
    return element


def _xml_text(text: str) -> str:
    """Drop the characters XML 1.0 cannot carry (control characters, lone surrogates)."""
    return "".join(c for c in text if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd")
                   or c >= "\U00010000")


def _link(parent, link: Link) -> None:
    attrs = {"rel": link.rel, "href": link.href, "type": link.type}
    if link.title:
        attrs["title"] = _xml_text(link.title)
    element = _sub(parent, "link", **attrs)
    if link.facet_group:
        element.set(f"{{{OPDS_NS}}}facetGroup", _xml_text(link.facet_group))
    if link.active:
        element.set(f"{{{OPDS_NS}}}activeFacet", "true")
    if link.count is not None:
        element.set(f"{{{THR}}}count", str(link.count))


def _feed(feed_id: str, title: str, updated: str, links: Iterable[Link], author: str,
          total: int | None = None, per_page: int | None = None, start: int | None = None):
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap=NSMAP)
    _sub(feed, "id", ID_PREFIX + feed_id)
    _sub(feed, "title", title)
    _sub(feed, "updated", updated)
    person = _sub(feed, "author")
    _sub(person, "name", author)
    for link in links:
        _link(feed, link)
    if total is not None:
        _sub(feed, "totalResults", str(total), ns=OPENSEARCH)
        _sub(feed, "itemsPerPage", str(per_page), ns=OPENSEARCH)
        _sub(feed, "startIndex", str(start), ns=OPENSEARCH)
    return feed


def _bytes(feed) -> bytes:
    return etree.tostring(feed, xml_declaration=True, encoding="utf-8")


def navigation_feed(feed_id: str, title: str, updated: str, links: Sequence[Link], entries: Sequence[NavEntry],
                    author: str) -> bytes:
    feed = _feed(feed_id, title, updated, links, author)
    for entry in entries:
        element = _sub(feed, "entry")
        _sub(element, "title", entry.title)
        _sub(element, "id", ID_PREFIX + entry.key)
        _sub(element, "updated", updated)
        _sub(element, "content", entry.content or entry.title, type="text")
        _link(element, Link("subsection", entry.href, entry.type, count=entry.count))
    return _bytes(feed)


def acquisition_feed(feed_id: str, title: str, updated: str, links: Sequence[Link], books: Sequence[dict],
                     book_links: dict[int, BookLinks], author: str, *, total: int, per_page: int,
                     start: int) -> bytes:
    feed = _feed(feed_id, title, updated, links, author, total, per_page, start)
    for book in books:
        _entry(feed, book, book_links[book["id"]], updated)
    return _bytes(feed)


def _entry(feed, book: dict, links: BookLinks, updated: str) -> None:
    entry = _sub(feed, "entry")
    _sub(entry, "title", book["title"])
    _sub(entry, "id", f"{ID_PREFIX}book:{book['sha256']}")
    _sub(entry, "updated", updated)
    for person in book["authors"]:
        _sub(_sub(entry, "author"), "name", person["name"])
    if book.get("language"):
        _sub(entry, "language", book["language"], ns=DC)
    if book.get("publisher"):
        _sub(entry, "publisher", book["publisher"], ns=DC)
    if book.get("published"):
        _sub(entry, "issued", book["published"], ns=DC)
    if book.get("identifier"):
        _sub(entry, "identifier", book["identifier"], ns=DC)
    for subject in book["subjects"]:
        _sub(entry, "category", term=_xml_text(subject["name"]), label=_xml_text(subject["name"]))
    if book.get("description"):
        _sub(entry, "summary", book["description"][:1000], type="text")
    _link(entry, Link("alternate", links.page, "text/html", title=book["title"]))
    if links.cover:
        _link(entry, Link(IMAGE, links.cover, links.cover_type or "image/jpeg"))
    if links.thumbnail:
        _link(entry, Link(THUMBNAIL, links.thumbnail, "image/jpeg"))
    epub = _sub(entry, "link", rel=OPEN_ACCESS, href=links.epub, type=EPUB, length=str(book["size"]))
    epub.set("title", "EPUB")
    if links.offline_html:
        _link(entry, Link(OPEN_ACCESS, links.offline_html, "text/html", title="HTML"))


def opensearch_description(short_name: str, description: str, template: str) -> bytes:
    root = etree.Element(f"{{{OPENSEARCH}}}OpenSearchDescription", nsmap={None: OPENSEARCH})
    for tag, text in (("ShortName", short_name[:16]), ("Description", description[:1024]),
                      ("InputEncoding", "UTF-8"), ("OutputEncoding", "UTF-8")):
        _sub(root, tag, text, ns=OPENSEARCH)
    _sub(root, "Url", ns=OPENSEARCH, type=ACQUISITION, template=template)
    return _bytes(root)


# -- OPDS 2.0 --------------------------------------------------------------------------------------


def link2(link: Link, templated: bool = False) -> dict:
    out: dict = {"rel": link.rel, "href": link.href, "type": link.type}
    if link.title:
        out["title"] = link.title
    if templated:
        out["templated"] = True
    if link.count is not None:
        out.setdefault("properties", {})["numberOfItems"] = link.count
    return out


def publication(book: dict, links: BookLinks) -> dict:
    metadata: dict = {
        "@type": "http://schema.org/Book",
        "identifier": f"{ID_PREFIX}book:{book['sha256']}",
        "title": book["title"],
    }
    if book["authors"]:
        metadata["author"] = [{"name": a["name"]} for a in book["authors"]]
    if book.get("language"):
        metadata["language"] = book["language"]
    if book.get("publisher"):
        metadata["publisher"] = {"name": book["publisher"]}
    if book.get("description"):
        metadata["description"] = book["description"][:1000]
    if book["subjects"]:
        metadata["subject"] = [{"name": s["name"]} for s in book["subjects"]]
    acquisitions = [{"rel": OPEN_ACCESS, "href": links.epub, "type": EPUB, "title": "EPUB"}]
    if links.offline_html:
        acquisitions.append({"rel": OPEN_ACCESS, "href": links.offline_html, "type": "text/html", "title": "HTML"})
    pub = {
        "metadata": metadata,
        "links": [{"rel": "alternate", "href": links.page, "type": "text/html"}, *acquisitions],
    }
    images = []
    if links.cover:
        images.append({"href": links.cover, "type": links.cover_type or "image/jpeg"})
    if links.thumbnail:
        images.append({"href": links.thumbnail, "type": "image/jpeg", "rel": "thumbnail"})
    if images:
        pub["images"] = images
    return pub
