"""What kind of image a body is, from its first bytes: servers' Content-Type headers lie.

Only these formats are decoded at all (Pillow is told so), which keeps Pillow's rarer, less
hardened decoders away from untrusted input.
"""

from __future__ import annotations

SNIFF_BYTES = 16
"""Bytes needed to tell every accepted format apart."""

ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


def sniff(head: bytes) -> str | None:
    """The Pillow format name of an accepted image starting with `head`, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 14:
        return "BMP"
    return None


def describe(head: bytes) -> str:
    """A short, printable description of a body that is not an accepted image."""
    stripped = head.lstrip()[:8].lower()
    if stripped.startswith((b"<!doctyp", b"<html", b"<?xml", b"<svg")):
        return "markup (HTML/XML/SVG)"
    if not head:
        return "an empty body"
    return f"unknown bytes {head[:8].hex()}"
