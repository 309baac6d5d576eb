"""The package document (OPF) of an EPUB: finding it, and reading its manifest, spine, guide and metadata.

Read with lxml's recovering parser, tolerant of namespaces (OEB 1 layouts, elements
outside the OPF namespace) and of broken XML; see ``appliance.books.epub`` for why
ebooklib is not used.
"""
from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass, field

from lxml import etree

from appliance.books.container import EpubUnreadable, _Archive, _MemberUnreadable
from appliance.books.htmltext import collapse, html_to_text
from appliance.messages import N_

_XML_PARSER = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, remove_comments=True,
                              remove_pis=True, huge_tree=False)


@dataclass
class _Item:
    id: str
    href: str  # as written in the manifest (relative to the package document)
    media_type: str
    properties: frozenset[str]
    path: str | None = None  # the zip member, once resolved


@dataclass
class _Package:
    """What the package document says."""

    opf_path: str
    unique_id: str
    metadata: list[tuple[str, str, dict[str, str]]]  # (lowercase element name, text, attributes)
    items: dict[str, _Item]
    spine: list[str]  # idrefs in order
    guide: list[tuple[str, str]] = field(default_factory=list)  # (type, href)

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.opf_path)


def _local(name: str) -> str:
    return etree.QName(name).localname if name.startswith("{") else name.rsplit(":", 1)[-1]


def _attributes(pairs) -> dict[str, str]:
    return {_local(k): (v or "").strip() for k, v in pairs}


def _media_type(value: str) -> str:
    value = (value or "").strip().lower()
    return "image/jpeg" if value == "image/jpg" else value


def _parse_xml(data: bytes):
    """The root element of a possibly broken XML document, or None."""
    try:
        root = etree.fromstring(data, _XML_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        root = None
    if root is None:
        stripped = re.sub(rb"^\s*(\xef\xbb\xbf)?\s*(<\?xml[^>]*>)?", b"", data, count=1)
        try:
            root = etree.fromstring(stripped, _XML_PARSER)
        except (etree.XMLSyntaxError, ValueError):
            return None
    return root


def _children(element, name: str) -> list:
    return [c for c in element if isinstance(c.tag, str) and _local(c.tag).lower() == name]


def _first(root, name: str):
    for element in root.iter():
        if isinstance(element.tag, str) and _local(element.tag).lower() == name:
            return element
    return None


def _package_from_opf(opf_path: str, data: bytes) -> _Package:
    """This module's own reading of a package document; tolerant of namespaces and broken XML."""
    root = _parse_xml(data)
    if root is None:
        raise EpubUnreadable(N_("the package document %(name)s is not readable XML"), name=opf_path)
    metadata: list[tuple[str, str, dict[str, str]]] = []
    block = _first(root, "metadata")
    if block is not None:
        elements = []
        for child in block:
            if isinstance(child.tag, str) and _local(child.tag).lower() in ("dc-metadata", "x-metadata"):
                elements.extend(child)  # OEB 1 layout
            else:
                elements.append(child)
        for element in elements:
            if isinstance(element.tag, str):
                metadata.append((_local(element.tag).lower(), "".join(element.itertext()),
                                 _attributes(element.items())))
    items: dict[str, _Item] = {}
    manifest = _first(root, "manifest")
    for element in _children(manifest, "item") if manifest is not None else []:
        attrs = _attributes(element.items())
        item_id = attrs.get("id") or f"(no id {len(items) + 1})"
        items.setdefault(item_id, _Item(item_id, attrs.get("href", ""), _media_type(attrs.get("media-type", "")),
                                        frozenset(attrs.get("properties", "").split())))
    spine_element = _first(root, "spine")
    spine = [] if spine_element is None else [
        ref.get("idref", "").strip() for ref in _children(spine_element, "itemref")
    ]
    guide_element = _first(root, "guide")
    guide = [] if guide_element is None else [
        (ref.get("type", "").strip().lower(), ref.get("href", "").strip())
        for ref in _children(guide_element, "reference")
    ]
    return _Package(opf_path, root.get("unique-identifier", "").strip(), metadata, items, spine, guide)


def _find_opf(archive: _Archive, warn) -> str:
    container = archive.find("META-INF/container.xml")
    if container is not None:
        root = None
        try:
            root = _parse_xml(archive.read(container))
        except _MemberUnreadable as e:
            warn(e.message)
        rootfiles = [] if root is None else [
            e for e in root.iter() if isinstance(e.tag, str) and _local(e.tag) == "rootfile"
        ]
        rootfiles.sort(key=lambda e: e.get("media-type") != "application/oebps-package+xml")
        for rootfile in rootfiles:
            found = archive.resolve(rootfile.get("full-path", ""))
            if found:
                return found
        if root is not None:
            warn(N_("META-INF/container.xml names no package document that is in the archive"))
        else:
            warn(N_("META-INF/container.xml is not readable XML"))
    candidates = sorted((n for n in archive.names() if n.lower().endswith(".opf")), key=lambda n: (n.count("/"), n))
    if not candidates:
        raise EpubUnreadable(N_("no OPF package document found (this zip is not an EPUB)"))
    if container is None:
        warn(N_("META-INF/container.xml is missing; using the package document %(name)s"), name=candidates[0])
    return candidates[0]


def _read_package(archive: _Archive, warn) -> _Package:
    opf = _find_opf(archive, warn)
    try:
        data = archive.read(opf)
    except _MemberUnreadable as e:
        raise EpubUnreadable(N_("the package document cannot be read: %(detail)s"), detail=e.message) from e
    return _package_from_opf(opf, data)


@dataclass
class _Metadata:
    title: str = ""
    authors: tuple[str, ...] = ()
    language: str = ""
    subjects: tuple[str, ...] = ()
    description: str = ""
    publisher: str = ""
    date: str = ""
    identifier: str = ""
    cover_id: str = ""


def _unique(values) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _interpret_metadata(package: _Package) -> _Metadata:
    dc: dict[str, list[tuple[str, dict[str, str]]]] = defaultdict(list)
    refines: dict[str, dict[str, str]] = defaultdict(dict)
    cover_id = ""
    for name, text, attrs in package.metadata:
        if name == "meta":
            if attrs.get("refines") and attrs.get("property"):
                refines[attrs["refines"].lstrip("#")].setdefault(attrs["property"].lower(), collapse(text))
            if attrs.get("name", "").lower() == "cover" and not cover_id:
                cover_id = attrs.get("content", "")
        else:
            dc[name].append((text, attrs))

    def values(name: str) -> list[str]:
        return [collapse(text) for text, _ in dc[name] if collapse(text)]

    titles = [(collapse(t), refines[a.get("id", "")].get("title-type", "")) for t, a in dc["title"] if collapse(t)]
    titles.sort(key=lambda t: t[1] not in ("", "main"))
    creators = [(collapse(t), (a.get("role") or refines[a.get("id", "")].get("role", "")).lower())
                for t, a in dc["creator"] if collapse(t)]
    authors = [name for name, role in creators if role in ("", "aut")] or [name for name, _ in creators]
    identifiers = [(collapse(t), a.get("id", "")) for t, a in dc["identifier"] if collapse(t)]
    identifier = next((v for v, i in identifiers if i and i == package.unique_id), identifiers[0][0] if identifiers else "")
    dates = [(collapse(t), a.get("event", "").lower()) for t, a in dc["date"] if collapse(t)]
    dates.sort(key=lambda d: d[1] not in ("", "publication"))
    descriptions = [t for t, _ in dc["description"] if t.strip()]
    return _Metadata(
        title=titles[0][0] if titles else "",
        authors=_unique(authors),
        language=(values("language") or [""])[0],
        subjects=_unique(values("subject")),
        description=_plain_description(descriptions[0]) if descriptions else "",
        publisher=(values("publisher") or [""])[0],
        date=dates[0][0] if dates else "",
        identifier=identifier,
        cover_id=cover_id,
    )


def _plain_description(text: str) -> str:
    if re.search(r"<[A-Za-z/!]|&[#A-Za-z0-9]+;", text):
        return html_to_text(text)
    return "\n".join(line for line in (collapse(part) for part in text.splitlines()) if line)
