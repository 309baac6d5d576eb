"""Reading an EPUB file into a frozen record: metadata, cover, chapters, language, warnings.

Pure: no Flask, database or index here. Real files are defective (missing manifest
items, backslash or percent-encoded hrefs, duplicate zip entries, missing mimetype,
wrong language tags, bad XML), so reading is lenient: what can be read is read,
every defect becomes a one-line warning, and ``EpubUnreadable`` is raised only when
nothing useful can be read, with a reason a librarian understands.

The container, package document (OPF), nav document and NCX are read with
zipfile and lxml rather than ebooklib: ebooklib raises on a single missing
resource, and worse, it succeeds while silently dropping manifest items declared
outside the OPF namespace and turning comments in the spine into items, so its
success says nothing about being right. It also loads every member into memory.
Reading is split by concern: ``container`` opens the zip and reads members safely,
``metadata`` reads the package document, ``covers`` finds the cover and makes the
thumbnail; this module assembles the chapters and the record.

What one book may cost is bounded (see "Limits on what is imported" in docs/librarian.md): a chapter
over ``MAX_CHAPTER_BYTES`` or a spine of more than ``MAX_CHAPTERS`` documents is refused, a chapter
nested deeper than ``MAX_NESTING`` is kept with a warning (the reader shows its plain text), and only
the first ``MAX_TEXT_CHARS`` of a book's text are kept for search.
"""
from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

from appliance.books.container import (
    _REMOTE,
    MAX_BOOK_READ_BYTES,
    MAX_CHAPTER_BYTES,
    MAX_ZIP_ENTRIES,
    EpubUnreadable,
    _Archive,
    _check_mimetype,
    _MemberTooLarge,
    _MemberUnreadable,
    _open_zip,
)
from appliance.books.covers import _read_cover, make_thumbnail
from appliance.books.htmltext import MAX_NESTING, collapse, document_text, nav_links
from appliance.books.language import detect_language, language_of_text, primary_language
from appliance.books.metadata import (
    _children,
    _interpret_metadata,
    _Item,
    _local,
    _Package,
    _parse_xml,
    _read_package,
)
from appliance.messages import N_, Message, say, say_plural

__all__ = ["BookRecord", "ChapterRecord", "read_epub"]

MAX_WARNINGS = 40
LANGUAGE_SAMPLE_CHARS = 60_000
MAX_CHAPTERS = 5_000  # documents and pictures in the spine (the largest real book seen had 2,014)
MAX_TEXT_CHARS = 4_000_000  # plain text kept per book for search (each character takes the index 15-20 bytes)

XHTML_TYPES = frozenset({"application/xhtml+xml", "text/html", "application/html", "text/x-oeb1-document"})
NCX_TYPE = "application/x-dtbncx+xml"
FONT_OBFUSCATION = frozenset({"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"})


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
                links = nav_links(archive.read(item.path, limit=MAX_CHAPTER_BYTES))
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
            root = _parse_xml(archive.read(ncx.path, limit=MAX_CHAPTER_BYTES))
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
    text_chars: int = 0  # all the text read, kept or not (MAX_TEXT_CHARS)


def _read_chapters(archive: _Archive, package: _Package, encrypted: set[str], warn) -> _Reading:
    documents, pages = _spine_documents(package, warn)
    if len(documents) + pages > MAX_CHAPTERS:
        raise EpubUnreadable(N_("the book has %(num)d chapters and pages, more than the %(limit)d one book may have"),
                             num=len(documents) + pages, limit=MAX_CHAPTERS)
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
            data = archive.read(item.path, limit=MAX_CHAPTER_BYTES)
        except _MemberTooLarge as e:
            raise EpubUnreadable(e.message) from e
        except _MemberUnreadable as e:
            warn(e.message)
            reading.failures.append(e.message)
            continue
        extracted = document_text(data)
        if not extracted.clean_encoding:
            warn(N_("%(name)s has bytes that are not valid text in its encoding"), name=item.path)
        if extracted.depth > MAX_NESTING:
            warn(N_("%(name)s nests its elements more than %(limit)d deep; it is shown as plain text"),
                 name=item.path, limit=MAX_NESTING)
        text = _cut(extracted.text, MAX_TEXT_CHARS - reading.text_chars)
        reading.text_chars += len(extracted.text)
        reading.chapters.append(ChapterRecord(
            position=len(reading.chapters),
            href=item.path,
            title=titles.get(item.path) or extracted.heading,
            text=text,
            html_bytes=len(data),
        ))
    if reading.text_chars > MAX_TEXT_CHARS:
        warn(N_("the book has %(num)s characters of text; only the first %(limit)s are kept for search"),
             num=f"{reading.text_chars:,}", limit=f"{MAX_TEXT_CHARS:,}")
    return reading


def _cut(text: str, room: int) -> str:
    """``text`` if it fits in ``room`` characters, else its paragraphs that do (or its first ``room``)."""
    if len(text) <= room:
        return text
    if room <= 0:
        return ""
    end = text.rfind("\n", 0, room + 1)
    return text[:end if end > 0 else room]


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


def read_epub(path: Path) -> BookRecord:
    """Read an EPUB file into a ``BookRecord``; raise ``EpubUnreadable`` only when nothing useful can be read."""
    path = Path(path)
    try:
        sha256, size = _sha256_of(path)
    except OSError as e:
        raise EpubUnreadable(N_("cannot read the file: %(detail)s"), detail=str(e.strerror or e)) from e
    warn = _Warnings()
    with _open_zip(path, size) as zf:
        archive = _Archive(zf, warn, max_entries=MAX_ZIP_ENTRIES, max_read=MAX_BOOK_READ_BYTES)
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
