"""The image types the project accepts, recognised by their magic bytes.

Clients' file names and servers' Content-Type headers lie, so the api (uploads) and the worker
(downloads, decoding) both decide by a file's first bytes — with this one table, so that what the
api accepts is exactly what the worker decodes. Only these formats reach Pillow at all, which keeps
its rarer, less hardened decoders away from untrusted input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageType:
    """A recognised image type: Pillow's format name, the file extension, the content type."""

    format: str
    extension: str
    content_type: str


JPEG = ImageType("JPEG", "jpg", "image/jpeg")
PNG = ImageType("PNG", "png", "image/png")
GIF = ImageType("GIF", "gif", "image/gif")
WEBP = ImageType("WEBP", "webp", "image/webp")
BMP = ImageType("BMP", "bmp", "image/bmp")
TIFF = ImageType("TIFF", "tiff", "image/tiff")

ACCEPTED = (JPEG, PNG, GIF, WEBP, BMP, TIFF)

SNIFF_BYTES = 16
"""Bytes needed to tell every accepted type apart."""


def sniff(head: bytes) -> ImageType | None:
    """The accepted type whose signature `head` (a file's first bytes) starts with, if any."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    if head.startswith(b"BM") and len(head) >= 14:
        return BMP
    return None


def describe(head: bytes) -> str:
    """A short, printable description of a body that is not an accepted image."""
    stripped = head.lstrip()[:8].lower()
    if stripped.startswith((b"<!doctyp", b"<html", b"<?xml", b"<svg")):
        return "markup (HTML/XML/SVG)"
    if not head:
        return "an empty body"
    return f"unknown bytes {head[:8].hex()}"


def content_type_for(path: str) -> str:
    """Content type of a thumbnail file, from the extension the worker gave it."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    known = {t.extension: t.content_type for t in ACCEPTED} | {"jpeg": "image/jpeg"}
    return known.get(suffix, "application/octet-stream")


OUTPUT_CONTENT_TYPES = {
    "jpeg": JPEG.content_type,
    "png": PNG.content_type,
    "webp": WEBP.content_type,
}
"""Content-Type of each thumbnail format an op may ask for (an object's metadata, the api's
responses)."""


def content_type_of(output_format: str) -> str:
    """The Content-Type of a thumbnail in `output_format` (jpeg, png, webp)."""
    return OUTPUT_CONTENT_TYPES.get(output_format.lower(), "application/octet-stream")
