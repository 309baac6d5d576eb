"""Reading an EPUB file into a frozen record: metadata, cover, chapters, language, warnings.

Pure: no Flask, database or index here. Real files are defective (missing manifest
items, backslash or percent-encoded hrefs, duplicate zip entries, missing mimetype,
wrong language tags, bad XML), so reading is lenient: what can be read is read,
every defect becomes a one-line warning, and ``EpubUnreadable`` is raised only when
nothing useful can be read, with a reason a librarian understands.

The container, package document (OPF), nav document and NCX are read here with
zipfile and lxml rather than ebooklib: ebooklib raises on a single missing
resource, and worse, it succeeds while silently dropping manifest items declared
outside the OPF namespace and turning comments in the spine into items, so its
success says nothing about being right. It also loads every member into memory.
Every member is read through ``_Archive``, which looks names up leniently and caps
sizes, so a zip bomb is refused instead of filling the memory.
"""
from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import re
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from lxml import etree
from PIL import Image

from appliance.books.htmltext import collapse, document_text, html_to_text, nav_links
from appliance.books.language import detect_language, language_of_text, primary_language
from appliance.messages import N_, Message, SaidError, say, say_plural

__all__ = [
    "BookRecord", "ChapterRecord", "EpubUnreadable", "detect_language", "make_thumbnail",
    "normalize_href", "read_epub", "read_member",
]

logger = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_MEMBER_BYTES = 64 * MB  # one zip member, decompressed
MAX_BOOK_READ_BYTES = 256 * MB  # everything read from one book
MAX_ARCHIVE_BYTES = 1024 * MB  # the whole archive as declared by its directory
MAX_RATIO = 100  # decompressed / compressed, checked for members above RATIO_CHECKED_ABOVE
RATIO_CHECKED_ABOVE = 1 * MB
MAX_IMAGE_PIXELS = 40_000_000
MAX_WARNINGS = 40
THUMBNAIL_TARGET_BYTES = 12 * 1024
LANGUAGE_SAMPLE_CHARS = 60_000

XHTML_TYPES = frozenset({"application/xhtml+xml", "text/html", "application/html", "text/x-oeb1-document"})
NCX_TYPE = "application/x-dtbncx+xml"
FONT_OBFUSCATION = frozenset({"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"})
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_XML_PARSER = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, remove_comments=True,
                              remove_pis=True, huge_tree=False)


class EpubUnreadable(SaidError):
    """The file cannot be imported; ``e.message`` says why in one line."""


@dataclass(frozen=True)
class ChapterRecord:
    position: int  # 0-based order among readable spine documents
    href: str  # normalized path of the document inside the zip
    title: str  # from the nav document / NCX, else the first heading, else ""
    text: str  # plain text, NFC, paragraphs separated by "\n"
    html_bytes: int


@dataclass(frozen=True)
class BookRecord:
    sha256: str
    size: int
    title: str
    authors: tuple[str, ...]
    language: str  # best primary language tag, lowercase ("und" when nothing is known)
    declared_language: str  # dc:language as written ("" if missing)
    subjects: tuple[str, ...]
    description: str
    publisher: str
    date: str
    identifier: str
    cover: bytes | None
    cover_media_type: str | None
    thumbnail: bytes | None
    chapters: tuple[ChapterRecord, ...]
    warnings: tuple[Message, ...]
    cover_href: str | None = None  # where the cover sits inside the zip


class _MemberUnreadable(SaidError):
    """One zip member cannot be read (damaged, encrypted, unsupported compression)."""


class _MemberTooLarge(_MemberUnreadable):
    """One zip member is larger than this reader accepts."""


def normalize_href(href: str, base: str = "") -> str:
    """A zip member path from an href: forward slashes, no fragment, percent-decoded, NFC, no dot segments.

    ``base`` is the folder the href is relative to (e.g. ``"OEBPS"``).
    """
    path = href.replace("\\", "/").split("#", 1)[0]
    return _clean_path(posixpath.join(base, unquote(path)))


def _clean_path(name: str) -> str:
    parts: list[str] = []
    for segment in unicodedata.normalize("NFC", name.replace("\\", "/")).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    return "/".join(parts)


def _size_mb(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= 10 * MB else f"{n / MB:.1f} MB"


class _Archive:
    """A zip file with lenient name lookup and size caps on everything read from it."""

    def __init__(self, zf: zipfile.ZipFile, warn) -> None:
        self.zf = zf
        self.read_total = 0
        self.by_name: dict[str, zipfile.ZipInfo] = {}
        self.by_folded: dict[str, list[str]] = defaultdict(list)
        declared = 0
        seen: dict[str, list[zipfile.ZipInfo]] = defaultdict(list)
        for info in zf.infolist():
            if info.filename.endswith("/"):  # a folder (ZipInfo.is_dir fails on an empty name)
                continue
            name = _clean_path(info.filename)
            if not name:
                continue
            declared += info.file_size
            if info.file_size > RATIO_CHECKED_ABOVE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                ratio = info.file_size // max(info.compress_size, 1)
                raise EpubUnreadable(N_("zip entry %(name)s would expand %(ratio)d times (to %(size)s): "
                                        "the file looks like a zip bomb"),
                                     name=name, ratio=ratio, size=_size_mb(info.file_size))
            seen[name].append(info)
        if declared > MAX_ARCHIVE_BYTES:
            raise EpubUnreadable(N_("the archive would expand to %(size)s, more than the %(limit)s one book may take"),
                                 size=_size_mb(declared), limit=_size_mb(MAX_ARCHIVE_BYTES))
        for name, infos in seen.items():
            if len(infos) > 1:
                if len({(i.CRC, i.file_size) for i in infos}) > 1:
                    raise EpubUnreadable(N_("zip entry names are duplicated with different contents: %(name)s"), name=name)
                warn(say_plural("zip entry %(name)s is stored %(num)d times", "zip entry %(name)s is stored %(num)d times",
                                len(infos), name=name))
            self.by_name[name] = infos[0]
            self.by_folded[name.casefold()].append(name)
        for names in self.by_folded.values():
            if len(names) > 1:
                warn(N_("zip entry names differ only in letter case: %(names)s"), names=", ".join(sorted(names)))

    def names(self) -> list[str]:
        return list(self.by_name)

    def find(self, name: str) -> str | None:
        """The stored name matching a cleaned path exactly, or else by letter case when unambiguous."""
        if name in self.by_name:
            return name
        folded = self.by_folded.get(name.casefold(), [])
        return folded[0] if len(folded) == 1 else None

    def resolve(self, href: str, base: str = "") -> str | None:
        """The member an href points to, trying the readings real files need; None if absent."""
        raw = href.strip().replace("\\", "/")
        if not raw or _REMOTE.match(raw):
            return None
        without_fragment = raw.split("#", 1)[0]
        for candidate in (without_fragment, raw):  # a literal '#' in a file name comes last
            for path in (unquote(candidate), candidate):
                found = self.find(_clean_path(posixpath.join(base, path)))
                if found:
                    return found
        return None

    def size(self, name: str) -> int:
        return self.by_name[name].file_size

    def read(self, name: str, limit: int | None = None) -> bytes:
        limit = MAX_MEMBER_BYTES if limit is None else min(limit, MAX_MEMBER_BYTES)
        info = self.by_name[name]
        if info.file_size > limit:
            raise _MemberTooLarge(N_("%(name)s is too large (%(size)s; the limit is %(limit)s)"),
                                  name=name, size=_size_mb(info.file_size), limit=_size_mb(limit))
        if self.read_total + info.file_size > MAX_BOOK_READ_BYTES:
            raise EpubUnreadable(N_("the book holds more than %(limit)s of text and images to read; "
                                    "it is too large to import"), limit=_size_mb(MAX_BOOK_READ_BYTES))
        try:
            with self.zf.open(info) as member:
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
            raise _MemberUnreadable(N_("%(name)s is damaged in the zip (%(detail)s)"), name=name, detail=str(e)) from e
        except RuntimeError as e:  # encrypted member
            raise _MemberUnreadable(N_("%(name)s is encrypted in the zip"), name=name) from e
        except NotImplementedError as e:
            raise _MemberUnreadable(N_("%(name)s uses a compression method this reader does not know"), name=name) from e
        self.read_total += len(data)
        return data


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


class _Warnings(list):
    """The warnings of one reading, each once: ``warn(N_("text %(name)s"), name=...)`` or ``warn(message)``."""

    def __call__(self, text: str | Message, **params) -> None:
        message = text if isinstance(text, Message) else say(text, **params)
        if message not in self:
            self.append(message)

    def final(self) -> tuple[Message, ...]:
        if len(self) <= MAX_WARNINGS:
            return tuple(self)
        return (*self[: MAX_WARNINGS - 1], say_plural("... and %(num)d more warning", "... and %(num)d more warnings",
                                                     len(self) - MAX_WARNINGS + 1))


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


def _check_mimetype(archive: _Archive, warn) -> None:
    name = archive.find("mimetype")
    if name is None:
        warn(N_("the mimetype file is missing"))
        return
    try:
        value = archive.read(name, limit=1024).decode("ascii", "replace").strip()
    except _MemberUnreadable as e:
        warn(e.message)
        return
    if value != "application/epub+zip":
        warn(N_("the mimetype file says %(value)r instead of application/epub+zip"), value=value[:60])


def _encrypted_members(archive: _Archive, warn) -> set[str]:
    """Members encrypted by DRM (font obfuscation is not DRM and is left out)."""
    name = archive.find("META-INF/encryption.xml")
    if name is None:
        return set()
    try:
        root = _parse_xml(archive.read(name))
    except _MemberUnreadable as e:
        warn(e.message)
        return set()
    encrypted = set()
    for data in [] if root is None else root.iter():
        if not isinstance(data.tag, str) or _local(data.tag) != "EncryptedData":
            continue
        method = next((e.get("Algorithm", "") for e in data.iter()
                       if isinstance(e.tag, str) and _local(e.tag) == "EncryptionMethod"), "")
        if method in FONT_OBFUSCATION:
            continue
        for ref in data.iter():
            if isinstance(ref.tag, str) and _local(ref.tag) == "CipherReference":
                found = archive.resolve(ref.get("URI", ""))
                if found:
                    encrypted.add(found)
    return encrypted


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


def _is_document(item: _Item) -> bool:
    if item.media_type in XHTML_TYPES:
        return True
    return not item.media_type.startswith("image/") and (item.path or "").lower().endswith((".xhtml", ".html", ".htm"))


def _toc_titles(archive: _Archive, package: _Package, warn) -> dict[str, str]:
    """Document path -> title, from the EPUB 3 nav document and then the EPUB 2 NCX."""
    titles: dict[str, str] = {}
    for item in package.items.values():
        if "nav" in item.properties and item.path:
            try:
                links = nav_links(archive.read(item.path))
            except _MemberUnreadable as e:
                warn(e.message)
                continue
            for href, label in links:
                target = archive.resolve(href, posixpath.dirname(item.path))
                if target and label:
                    titles.setdefault(target, label)
            break
    ncx = next((i for i in package.items.values() if i.media_type == NCX_TYPE and i.path), None)
    if ncx is not None and ncx.path:
        try:
            root = _parse_xml(archive.read(ncx.path))
        except _MemberUnreadable as e:
            warn(e.message)
            root = None
        for point in [] if root is None else root.iter():
            if not isinstance(point.tag, str) or _local(point.tag) != "navPoint":
                continue
            label = next((collapse("".join(t.itertext())) for t in point.iter()
                          if isinstance(t.tag, str) and _local(t.tag) == "text"), "")
            content = next((c for c in _children(point, "content")), None)
            target = archive.resolve(content.get("src", ""), posixpath.dirname(ncx.path)) if content is not None else None
            if target and label:
                titles.setdefault(target, label)
    return titles


def _spine_documents(package: _Package, warn) -> tuple[list[_Item], int]:
    """The readable documents of the spine in order, and how many image or drawing pages it holds."""
    documents: list[_Item] = []
    seen: set[str] = set()
    pages = 0
    for idref in package.spine:
        item = package.items.get(idref)
        if item is None:
            warn(N_("the spine names item %(id)r, which the manifest does not list"), id=idref)
            continue
        if item.path is None or item.path in seen:
            continue
        seen.add(item.path)
        if _is_document(item):
            documents.append(item)
        else:
            pages += 1
    if not documents and not pages:
        fallback = [i for i in package.items.values() if _is_document(i) and i.path and "nav" not in i.properties]
        if fallback:
            warn(N_("the spine lists no readable document; chapters follow the manifest order"))
            documents = fallback
    elif not documents:
        warn(say_plural("the spine holds only %(num)d image or drawing; there is no text to read",
                        "the spine holds only %(num)d images or drawings; there is no text to read", pages))
    return documents, pages


@dataclass
class _Reading:
    chapters: list[ChapterRecord]
    pages: int  # image or drawing pages in the spine
    failures: list[Message]  # why documents could not be read


def _read_chapters(archive: _Archive, package: _Package, encrypted: set[str], warn) -> _Reading:
    documents, pages = _spine_documents(package, warn)
    titles = _toc_titles(archive, package, warn)
    reading = _Reading([], pages, [])
    locked = [item for item in documents if item.path in encrypted]
    if documents and len(locked) == len(documents):
        raise EpubUnreadable(N_("the book is locked with DRM: its text is encrypted"))
    if locked:
        warn(say_plural("%(num)d document is encrypted (DRM) and was left out",
                        "%(num)d documents are encrypted (DRM) and were left out", len(locked)))
    for item in documents:
        assert item.path is not None
        if item.path in encrypted:
            continue
        try:
            data = archive.read(item.path)
        except _MemberTooLarge as e:
            raise EpubUnreadable(e.message) from e
        except _MemberUnreadable as e:
            warn(e.message)
            reading.failures.append(e.message)
            continue
        extracted = document_text(data)
        if not extracted.clean_encoding:
            warn(N_("%(name)s has bytes that are not valid text in its encoding"), name=item.path)
        reading.chapters.append(ChapterRecord(
            position=len(reading.chapters),
            href=item.path,
            title=titles.get(item.path) or extracted.heading,
            text=extracted.text,
            html_bytes=len(data),
        ))
    return reading


def _image_type(data: bytes) -> str | None:
    """The media type of a raster image Pillow can open, or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "")
    except Exception:  # untrusted bytes: any decoder error means "not an image"
        return None


def _cover_candidates(archive: _Archive, package: _Package, meta: _Metadata) -> list[str]:
    items = list(package.items.values())
    found: list[str | None] = [i.path for i in items if "cover-image" in i.properties]
    if meta.cover_id:
        by_id = package.items.get(meta.cover_id)
        found.append(by_id.path if by_id else archive.resolve(meta.cover_id, package.folder))
    for kind, href in package.guide:
        page = archive.resolve(href, package.folder) if kind == "cover" else None
        if page and archive.size(page) < MB:
            try:
                markup = archive.read(page).decode("utf-8", "replace")
            except _MemberUnreadable:
                continue
            for src in re.findall(r"""<(?:img|image)\b[^>]*?(?:src|href)\s*=\s*["']([^"']+)""", markup, re.I):
                found.append(archive.resolve(src, posixpath.dirname(page)))
    found += [i.path for i in items
              if i.media_type.startswith("image/") and "cover" in (i.id + " " + posixpath.basename(i.href)).lower()]
    return list(dict.fromkeys(p for p in found if p))


def _read_cover(archive: _Archive, package: _Package, meta: _Metadata, warn) -> tuple[bytes | None, str | None, str | None]:
    for path in _cover_candidates(archive, package, meta):
        if path.lower().endswith(".svg"):
            continue
        try:
            data = archive.read(path, limit=16 * MB)
        except _MemberUnreadable as e:
            warn(N_("cover image skipped: %(detail)s"), detail=e.message)
            continue
        media_type = _image_type(data)
        if media_type:
            return data, media_type, path
        warn(N_("the cover %(name)s is not an image this library can show"), name=path)
    return None, None, None


def make_thumbnail(image: bytes, max_size: tuple[int, int] = (160, 240)) -> bytes | None:
    """A small JPEG of an image that fits in ``max_size``, or None if the bytes are not a usable image."""
    try:
        with Image.open(io.BytesIO(image)) as original:
            width, height = original.size
            if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
                return None
            original.draft("RGB", (max_size[0] * 2, max_size[1] * 2))  # JPEG decodes at a reduced scale
            picture = original.convert("RGBA") if original.mode in ("P", "PA", "LA", "RGBA", "La") \
                or "transparency" in original.info else original.convert("RGB")
            picture.thumbnail(max_size, Image.Resampling.LANCZOS)
            if picture.mode == "RGBA":
                background = Image.new("RGB", picture.size, (255, 255, 255))
                background.paste(picture, mask=picture.getchannel("A"))
                picture = background
            data = b""
            for quality in (80, 70, 60, 50, 40):
                out = io.BytesIO()
                picture.save(out, "JPEG", quality=quality, optimize=True)
                data = out.getvalue()
                if len(data) <= THUMBNAIL_TARGET_BYTES:
                    break
            return data
    except Exception:  # untrusted bytes: any decoder error means no thumbnail
        logger.debug("no thumbnail: image not decodable", exc_info=True)
        return None


def _language_sample(chapters: list[ChapterRecord]) -> str:
    """Text from across the book (front matter alone can be in another language)."""
    texts = [c.text for c in chapters if c.text]
    if not texts:
        return ""
    per_chapter = max(2000, LANGUAGE_SAMPLE_CHARS // len(texts))
    step = max(1, len(texts) * per_chapter // LANGUAGE_SAMPLE_CHARS)
    return "\n".join(t[:per_chapter] for t in texts[::step])[:LANGUAGE_SAMPLE_CHARS]


def _choose_language(declared: str, sample: str, warn) -> str:
    stated = primary_language(declared)
    if not stated:
        detected = detect_language(sample) if sample else None
        if detected:
            if declared:
                warn(N_("dc:language is %(value)r, which is not a language tag; the text reads as %(detected)s"),
                     value=declared, detected=detected)
            else:
                warn(N_("dc:language is missing; the text reads as %(detected)s"), detected=detected)
            return detected
        return "und"
    detected = language_of_text(stated, sample) if sample else None
    if detected:
        warn(N_("dc:language says %(value)s but the text reads as %(detected)s; using %(detected)s"),
             value=declared, detected=detected)
        return detected
    return stated


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _open_zip(path: Path, size: int) -> zipfile.ZipFile:
    if size == 0:
        raise EpubUnreadable(N_("the file is empty"))
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise EpubUnreadable(N_("not a zip archive (or the file is cut short)")) from e
    except (zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError) as e:
        raise EpubUnreadable(N_("the zip archive cannot be read: %(detail)s"), detail=str(e)) from e


def _read_package(archive: _Archive, warn) -> _Package:
    opf = _find_opf(archive, warn)
    try:
        data = archive.read(opf)
    except _MemberUnreadable as e:
        raise EpubUnreadable(N_("the package document cannot be read: %(detail)s"), detail=e.message) from e
    return _package_from_opf(opf, data)


def read_epub(path: Path) -> BookRecord:
    """Read an EPUB file into a ``BookRecord``; raise ``EpubUnreadable`` only when nothing useful can be read."""
    path = Path(path)
    try:
        sha256, size = _sha256_of(path)
    except OSError as e:
        raise EpubUnreadable(N_("cannot read the file: %(detail)s"), detail=str(e.strerror or e)) from e
    warn = _Warnings()
    with _open_zip(path, size) as zf:
        archive = _Archive(zf, warn)
        _check_mimetype(archive, warn)
        package = _read_package(archive, warn)
        missing = 0
        for item in package.items.values():
            if not item.href.strip():
                warn(N_("manifest item %(id)s has no href"), id=item.id)
            elif not _REMOTE.match(item.href.strip()):
                item.path = archive.resolve(item.href, package.folder)
                if item.path is None:
                    missing += 1
                    warn(N_("manifest item %(name)s is missing from the archive"), name=item.href)
        if not package.items:
            warn(N_("the package document lists no files"))
        meta = _interpret_metadata(package)
        encrypted = _encrypted_members(archive, warn)
        reading = _read_chapters(archive, package, encrypted, warn)
        chapters = reading.chapters
        if not chapters and not reading.pages:
            if reading.failures:
                raise EpubUnreadable(N_("no document of the book can be read: %(detail)s"), detail=reading.failures[0])
            if missing:
                raise EpubUnreadable(say_plural("none of the book's documents is in the archive (%(num)d file is missing)",
                                                "none of the book's documents is in the archive (%(num)d files are missing)",
                                                missing))
            raise EpubUnreadable(N_("the book has no readable content"))
        cover, cover_type, cover_href = _read_cover(archive, package, meta, warn)
    thumbnail = make_thumbnail(cover) if cover else None
    if cover and thumbnail is None:
        warn(N_("no thumbnail could be made from the cover %(name)s"), name=cover_href)
    language = _choose_language(meta.language, _language_sample(chapters), warn)
    if not meta.title:
        warn(N_("the book has no title; using the file name"))
    return BookRecord(
        sha256=sha256,
        size=size,
        title=meta.title or path.stem,
        authors=meta.authors,
        language=language,
        declared_language=meta.language,
        subjects=meta.subjects,
        description=meta.description,
        publisher=meta.publisher,
        date=meta.date,
        identifier=meta.identifier,
        cover=cover,
        cover_media_type=cover_type,
        thumbnail=thumbnail,
        chapters=tuple(chapters),
        warnings=warn.final(),
        cover_href=cover_href,
    )


def read_member(path: Path, href: str) -> bytes:
    """Raw bytes of one file inside an EPUB, found by its normalized href.

    Backslashes, letter case and percent-encoding in ``href`` are tolerated. Raises
    ``KeyError`` when the archive has no such file and ``EpubUnreadable`` when the
    archive or the member cannot be read safely.
    """
    try:
        size = Path(path).stat().st_size
    except OSError as e:
        raise EpubUnreadable(N_("cannot read the file: %(detail)s"), detail=str(e.strerror or e)) from e
    with _open_zip(Path(path), size) as zf:
        archive = _Archive(zf, lambda *message, **params: None)
        name = archive.resolve(href)
        if name is None:
            raise KeyError(href)
        try:
            return archive.read(name)
        except _MemberUnreadable as e:
            raise EpubUnreadable(e.message) from e
