"""EPUB writer for the demo catalog and for tests.

The project makes its own EPUBs: ``write_epub`` writes a small, valid EPUB 3
(with an EPUB 2 NCX too) and can inject the defects real files carry, so tests
exercise the importer on files nobody else wrote.
"""
from __future__ import annotations

import html
import io
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw


@dataclass(frozen=True)
class DemoChapter:
    title: str
    paragraphs: Sequence[str]


@dataclass(frozen=True)
class DemoBook:
    title: str
    authors: Sequence[str]
    language: str
    chapters: Sequence[DemoChapter]
    subjects: Sequence[str] = ()
    description: str = ""
    publisher: str = ""
    date: str = ""
    cover_color: tuple[int, int, int] | None = (40, 90, 140)
    identifier: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")


def make_cover_png(title: str, color: tuple[int, int, int] = (40, 90, 140), size=(600, 900)) -> bytes:
    """A plain coloured cover with a light band, as PNG bytes."""
    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    band = (0, size[1] // 3, size[0], size[1] // 3 + 120)
    draw.rectangle(band, fill=(245, 240, 225))
    draw.text((30, band[1] + 40), title[:40].encode("ascii", "replace").decode(), fill=(20, 20, 20))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _xhtml(title: str, body: str, language: str) -> str:
    t = html.escape(title)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        f'<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" '
        f'lang="{language}" xml:lang="{language}">\n<head><meta charset="utf-8"/><title>{t}</title>'
        '<link rel="stylesheet" type="text/css" href="style.css"/></head>\n'
        f"<body>\n{body}\n</body>\n</html>\n"
    )


# Fixed times in the zip: the same book written twice is the same file, with the same checksum (a
# demo run again found its books already there instead of adding them a second time).
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _entry(name: str) -> zipfile.ZipInfo:
    return zipfile.ZipInfo(name, date_time=ZIP_TIME)


def write_epub(
    path: Path,
    book: DemoBook,
    *,
    declared_language: str | None = None,
    missing_manifest_file: bool = False,
    backslash_hrefs: bool = False,
    extra_chapter_html: str | None = None,
    images: dict[str, bytes] | None = None,
) -> Path:
    """Write ``book`` as an EPUB 3 file at ``path`` and return the path.

    ``declared_language`` overrides the ``dc:language`` tag (to mislabel a book);
    ``missing_manifest_file`` lists a chapter in the manifest whose file is absent;
    ``backslash_hrefs`` writes Windows-style hrefs in the manifest;
    ``extra_chapter_html`` adds one more chapter whose body is that raw HTML;
    ``images`` adds files under ``images/`` (name -> bytes) to the manifest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lang = declared_language or book.language
    chapters: list[tuple[str, str, str]] = []  # (file name, title, body html)
    for n, chapter in enumerate(book.chapters, start=1):
        body = f"<h1>{html.escape(chapter.title)}</h1>\n" + "\n".join(
            f"<p>{html.escape(p)}</p>" for p in chapter.paragraphs
        )
        chapters.append((f"chapter{n:03d}.xhtml", chapter.title, body))
    if extra_chapter_html is not None:
        chapters.append((f"chapter{len(chapters) + 1:03d}.xhtml", "Extra", extra_chapter_html))

    sep = "\\" if backslash_hrefs else "/"
    manifest = [
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>',
        '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>',
        '<item id="css" href="style.css" media-type="text/css"/>',
    ]
    spine = []
    for n, (name, _title, _body) in enumerate(chapters, start=1):
        href = f"text{sep}{name}"
        manifest.append(f'<item id="c{n}" href="{href}" media-type="application/xhtml+xml"/>')
        spine.append(f'<itemref idref="c{n}"/>')
    if missing_manifest_file:
        manifest.append('<item id="ghost" href="text/ghost.xhtml" media-type="application/xhtml+xml"/>')
        spine.append('<itemref idref="ghost"/>')
    cover_png = make_cover_png(book.title, book.cover_color) if book.cover_color else None
    if cover_png:
        manifest.append(
            '<item id="cover-image" href="images/cover.png" media-type="image/png" properties="cover-image"/>'
        )
    for i, name in enumerate(sorted(images or {}), start=1):
        media = "image/png" if name.endswith(".png") else "image/jpeg"
        manifest.append(f'<item id="img{i}" href="images/{name}" media-type="{media}"/>')

    meta = [
        f'<dc:identifier id="bookid">{html.escape(book.identifier)}</dc:identifier>',
        f"<dc:title>{html.escape(book.title)}</dc:title>",
        f"<dc:language>{html.escape(lang)}</dc:language>",
        '<meta property="dcterms:modified">2024-01-01T00:00:00Z</meta>',
    ]
    meta += [f"<dc:creator>{html.escape(a)}</dc:creator>" for a in book.authors]
    meta += [f"<dc:subject>{html.escape(s)}</dc:subject>" for s in book.subjects]
    if book.description:
        meta.append(f"<dc:description>{html.escape(book.description)}</dc:description>")
    if book.publisher:
        meta.append(f"<dc:publisher>{html.escape(book.publisher)}</dc:publisher>")
    if book.date:
        meta.append(f"<dc:date>{html.escape(book.date)}</dc:date>")
    if cover_png:
        meta.append('<meta name="cover" content="cover-image"/>')
    opf = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="bookid">\n'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n' + "\n".join(meta) + "\n</metadata>\n"
        "<manifest>\n" + "\n".join(manifest) + "\n</manifest>\n"
        '<spine toc="ncx">\n' + "\n".join(spine) + "\n</spine>\n</package>\n"
    )
    nav_items = "\n".join(
        f'<li><a href="text/{name}">{html.escape(title)}</a></li>' for name, title, _ in chapters
    )
    nav = _xhtml(
        book.title, f'<nav epub:type="toc" id="toc"><h1>{html.escape(book.title)}</h1><ol>{nav_items}</ol></nav>', lang
    )
    ncx_points = "\n".join(
        f'<navPoint id="p{n}" playOrder="{n}"><navLabel><text>{html.escape(title)}</text></navLabel>'
        f'<content src="text/{name}"/></navPoint>'
        for n, (name, title, _) in enumerate(chapters, start=1)
    )
    ncx = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
        f'<head><meta name="dtb:uid" content="{html.escape(book.identifier)}"/></head>'
        f"<docTitle><text>{html.escape(book.title)}</text></docTitle><navMap>{ncx_points}</navMap></ncx>\n"
    )
    container = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        z.writestr(_entry("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr(_entry("META-INF/container.xml"), container, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(_entry("OEBPS/content.opf"), opf, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(_entry("OEBPS/nav.xhtml"), nav, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(_entry("OEBPS/toc.ncx"), ncx, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(_entry("OEBPS/style.css"), "body { line-height: 1.5; }\n", compress_type=zipfile.ZIP_DEFLATED)
        for name, title, body in chapters:
            z.writestr(_entry(f"OEBPS/text/{name}"), _xhtml(title, body, book.language), compress_type=zipfile.ZIP_DEFLATED)
        if cover_png:
            z.writestr(_entry("OEBPS/images/cover.png"), cover_png)
        for name, data in (images or {}).items():
            z.writestr(_entry(f"OEBPS/images/{name}"), data)
    tmp.replace(path)
    return path


# The demo catalog: short original texts in the readers' languages.
DEMO_BOOKS: tuple[DemoBook, ...] = (
    DemoBook(
        title="Thư viện trên núi",
        authors=("Lò Văn Sáng",),
        language="vi",
        subjects=("Truyện ngắn", "Thiếu nhi"),
        description="Câu chuyện về một thư viện nhỏ đến với bản làng vùng cao.",
        publisher="Thư viện cộng đồng",
        date="2024",
        cover_color=(30, 110, 80),
        chapters=(
            DemoChapter("Chương một: Con đường", (
                "Con đường lên bản quanh co giữa những nương ngô xanh.",
                "Mỗi sáng, cô giáo Hoa dắt xe đạp qua con suối nhỏ để đến trường.",
                "Bọn trẻ chạy theo sau, hỏi cô hôm nay có sách mới không.",
            )),
            DemoChapter("Chương hai: Chiếc hộp biết nói", (
                "Một ngày kia, chiếc hộp nhỏ có ăng-ten được đặt trong nhà văn hóa.",
                "Chỉ cần mở điện thoại là đọc được hàng nghìn cuốn sách.",
                "Ông trưởng bản đọc to một bài thơ, cả bản cùng lắng nghe.",
            )),
        ),
    ),
    DemoBook(
        title="Đường về bản",
        authors=("Hà Thị Mai",),
        language="vi",
        subjects=("Tiểu thuyết",),
        description="Một người con đi xa trở về quê hương sau mười năm.",
        cover_color=(150, 60, 40),
        chapters=(
            DemoChapter("Phần một", (
                "Đường về bản dài hơn anh tưởng, nhưng đôi chân vẫn nhớ từng khúc quanh.",
                "Tiếng khèn vọng lại từ phía đồi, như gọi người đi xa trở về.",
            )),
            DemoChapter("Phần hai", (
                "Mẹ đứng chờ ở đầu ngõ, mái tóc đã bạc trắng.",
                "Bữa cơm tối có canh rau rừng và cá suối nướng.",
            )),
        ),
    ),
    DemoBook(
        title="Growing Rice on Terraces",
        authors=("Community Extension Team",),
        language="en",
        subjects=("Agriculture",),
        description="A practical guide to terrace farming for highland villages.",
        cover_color=(90, 130, 30),
        chapters=(
            DemoChapter("Preparing the terraces", (
                "Repair the earth walls before the rains so that water stays on each step.",
                "Clear the channels that carry water from the stream to the highest field.",
            )),
            DemoChapter("Planting and care", (
                "Transplant seedlings when they have four or five leaves.",
                "Keep a shallow layer of water over the field while the plants are young.",
            )),
        ),
    ),
    DemoBook(
        title="Le jardin de la coopérative",
        authors=("Amélie Durand",),
        language="fr",
        subjects=("Agriculture", "Roman"),
        description="Un village apprend à cultiver ensemble un grand jardin.",
        cover_color=(120, 40, 110),
        chapters=(
            DemoChapter("Le printemps", (
                "Au printemps, chaque famille apporte ses graines à la coopérative.",
                "Les enfants arrosent les jeunes pousses avant l'école.",
            )),
            DemoChapter("La récolte", (
                "À la fin de l'été, le village partage la récolte sur la place.",
            )),
        ),
    ),
    DemoBook(
        title="حكايات القرية",
        authors=("سلمى الأحمد",),
        language="ar",
        subjects=("قصص",),
        description="حكايات قصيرة عن الحياة في قرية جبلية.",
        cover_color=(160, 120, 20),
        chapters=(
            DemoChapter("الفصل الأول: البئر", (
                "في وسط القرية بئر قديمة يجتمع حولها الناس كل مساء.",
                "يحكي الجد للأطفال قصصاً عن المطر والحصاد.",
            )),
            DemoChapter("الفصل الثاني: المكتبة", (
                "وصلت إلى القرية مكتبة صغيرة في صندوق، فصار الجميع يقرؤون.",
            )),
        ),
    ),
)


def write_demo_catalog(folder: Path) -> list[Path]:
    """Write the demo EPUBs into ``folder`` and return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, book in enumerate(DEMO_BOOKS, start=1):
        book = DemoBook(**{**book.__dict__, "identifier": f"urn:demo:book:{n}"})
        paths.append(write_epub(folder / f"demo-{n:02d}.epub", book))
    return paths
