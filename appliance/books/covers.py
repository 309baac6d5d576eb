"""The cover of an EPUB and its thumbnail: finding the cover image, checking it with Pillow, shrinking it.

A picture's size is read from its header before anything decodes it: one that would take more than
``MAX_DECODED_PIXELS`` once decoded for its thumbnail (a JPEG decodes at a reduced scale, others whole;
an 18 KB PNG of 40 million pixels took an import to 526 MB) is not used as the cover.
"""
from __future__ import annotations

import io
import logging
import posixpath
import re

from PIL import Image

from appliance.books.container import MB, _Archive, _MemberUnreadable
from appliance.books.metadata import _Metadata, _Package
from appliance.messages import N_

__all__ = ["make_thumbnail"]

logger = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 40_000_000  # a cover's size as its header says (below Pillow's Image.MAX_IMAGE_PIXELS)
MAX_DECODED_PIXELS = 16_000_000  # a cover decoded for its thumbnail: 64 MB at four bytes a pixel
THUMBNAIL_SIZE = (160, 240)
THUMBNAIL_TARGET_BYTES = 12 * 1024


def _decodable(image: Image.Image, max_size: tuple[int, int]) -> bool:
    """Whether ``image`` (opened, not decoded) is small enough to decode for a thumbnail of ``max_size``;
    a JPEG is set to decode at the smallest scale that serves (``draft``)."""
    width, height = image.size
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        return False
    image.draft("RGB", (max_size[0] * 2, max_size[1] * 2))
    width, height = image.size
    return width * height <= MAX_DECODED_PIXELS


def _image_type(data: bytes) -> tuple[str | None, tuple[int, int], bool]:
    """The media type of a raster image Pillow can open (None if it is not one), its size and whether
    it is small enough to decode, from its header alone."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            return Image.MIME.get(image.format or ""), size, _decodable(image, THUMBNAIL_SIZE)
    except Exception:  # untrusted bytes: any decoder error means "not an image"
        return None, (0, 0), False


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
        media_type, (width, height), decodable = _image_type(data)
        if media_type and not decodable:
            warn(N_("the cover %(name)s is %(width)d by %(height)d pixels, too many to show; it is left out"),
                 name=path, width=width, height=height)
            continue
        if media_type:
            return data, media_type, path
        warn(N_("the cover %(name)s is not an image this library can show"), name=path)
    return None, None, None


def make_thumbnail(image: bytes, max_size: tuple[int, int] = THUMBNAIL_SIZE,
                   target_bytes: int = THUMBNAIL_TARGET_BYTES) -> bytes | None:
    """A small JPEG of an image that fits in ``max_size``, or None if the bytes are not a usable image."""
    try:
        with Image.open(io.BytesIO(image)) as original:
            if not _decodable(original, max_size):
                return None
            mode = "RGBA" if original.mode in ("P", "PA", "LA", "RGBA", "La") or "transparency" in original.info \
                else "RGB"
            picture = original if original.mode == mode else original.convert(mode)  # no copy of a large picture
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
                if len(data) <= target_bytes:
                    break
            return data
    except Exception:  # untrusted bytes: any decoder error means no thumbnail
        logger.debug("no thumbnail: image not decodable", exc_info=True)
        return None
