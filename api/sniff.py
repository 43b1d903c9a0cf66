"""Recognising image types by their magic bytes, never by the client's name or header.

The stored original gets the extension recognised here, and the workers open it with Pillow, so
only types Pillow decodes are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageType:
    """A recognised image type."""

    extension: str
    content_type: str


JPEG = ImageType("jpg", "image/jpeg")
PNG = ImageType("png", "image/png")
GIF = ImageType("gif", "image/gif")
WEBP = ImageType("webp", "image/webp")
BMP = ImageType("bmp", "image/bmp")
TIFF = ImageType("tiff", "image/tiff")

ACCEPTED = (JPEG, PNG, GIF, WEBP, BMP, TIFF)
HEADER_BYTES = 16
"""How much of a file `sniff` needs to look at."""


def sniff(head: bytes) -> ImageType | None:
    """The image type whose signature `head` (the file's first bytes) starts with, if any."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"BM") and len(head) >= 14:
        return BMP
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    return None


def content_type_for(path: str) -> str:
    """Content type of a thumbnail file, from the extension the worker gave it."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "webp": "image/webp",
        "gif": "image/gif",
    }.get(suffix, "application/octet-stream")
