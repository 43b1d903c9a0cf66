"""Where things are stored, as the settings name it: a folder (`file:///data`) or a bucket with
an optional key prefix (`s3://bucket/some/prefix`).

Every service reads OUTPUT_URL and UPLOADS_URL the same way, and `jobs.outputs[].path` must mean
the same thing to the worker that writes it and the api that serves it, so the parsing and the
key layout live here once. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

OBJECT_SCHEME = "s3://"
FILE_SCHEME = "file://"

BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
"""S3's bucket naming rules (3-63 characters, lower case, digits, dots and hyphens)."""


class LocationError(ValueError):
    """A storage URL that names no usable place; the message says what is wrong."""


@dataclass(frozen=True)
class FileLocation:
    """A folder on a mounted volume."""

    root: Path

    @property
    def url(self) -> str:
        return self.root.resolve().as_uri() if self.root.is_absolute() else str(self.root)

    def describe(self, relative: str) -> str:
        """What `jobs.outputs[].path` holds for a file output: its path relative to the root
        (the seed's format, kept for file outputs)."""
        return relative


@dataclass(frozen=True)
class BucketLocation:
    """A bucket of an S3-compatible store, and the key prefix everything goes under."""

    bucket: str
    prefix: str = ""
    """Without leading or trailing slashes; empty for the bucket's top."""

    @property
    def url(self) -> str:
        return f"{OBJECT_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else self.root_url

    @property
    def root_url(self) -> str:
        return f"{OBJECT_SCHEME}{self.bucket}"

    def key(self, relative: str) -> str:
        """The object key of `relative` (a path below this location)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def describe(self, relative: str) -> str:
        """What `jobs.outputs[].path` holds for an object output: `s3://<bucket>/<key>`."""
        return f"{OBJECT_SCHEME}{self.bucket}/{self.key(relative)}"


Location = FileLocation | BucketLocation


def _clean_prefix(raw: str, url: str) -> str:
    prefix = raw.strip("/")
    if not prefix:
        return ""
    parts = PurePosixPath(prefix).parts
    if any(part in (".", "..") for part in parts) or "//" in prefix:
        raise LocationError(f"{url}: the key prefix may not contain '.', '..' or empty parts")
    return "/".join(parts)


def parse_bucket_url(url: str) -> BucketLocation:
    """`s3://bucket[/prefix]` → BucketLocation; LocationError says what is wrong otherwise."""
    if not url.startswith(OBJECT_SCHEME):
        raise LocationError(f"{url!r} is not an s3:// URL")
    rest = url.removeprefix(OBJECT_SCHEME)
    bucket, _, prefix = rest.partition("/")
    if not BUCKET_NAME.fullmatch(bucket):
        raise LocationError(
            f"{url!r}: {bucket!r} is not a valid bucket name (3-63 lower-case letters, digits, "
            "dots and hyphens)"
        )
    return BucketLocation(bucket=bucket, prefix=_clean_prefix(prefix, url))


def parse_location(url: str) -> Location:
    """A storage URL of the settings: `file:///path`, a plain absolute path, or `s3://…`."""
    text = url.strip()
    if text.startswith(OBJECT_SCHEME):
        return parse_bucket_url(text)
    if text.startswith(FILE_SCHEME):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise LocationError(f"{url!r}: a file URL names no host (file:///path)")
        text = unquote(parts.path)
    elif "://" in text:
        raise LocationError(f"{url!r}: only file:// and s3:// locations are supported")
    if not text.startswith("/"):
        raise LocationError(f"{url!r}: a folder must be an absolute path")
    return FileLocation(Path(text))


def resolve_location(url: str | None, legacy_dir: Path | None, default: str) -> Location:
    """The location a service uses: the URL setting when given, else the older folder setting
    (OUTPUT_DIR, UPLOADS_DIR: still honoured, meaning `file://<dir>`), else `default`."""
    if url:
        return parse_location(url)
    if legacy_dir is not None:
        return FileLocation(legacy_dir)
    return parse_location(default)


@dataclass(frozen=True)
class ObjectRef:
    """One object named by an `s3://bucket/key` URL (an item's source)."""

    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"{OBJECT_SCHEME}{self.bucket}/{self.key}"


def parse_object_url(url: str) -> ObjectRef:
    """`s3://bucket/key` → ObjectRef; LocationError when the bucket or the key is missing. The
    key is taken as it is (S3 keys may hold any characters; nothing maps it onto a folder)."""
    if not url.startswith(OBJECT_SCHEME):
        raise LocationError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url.removeprefix(OBJECT_SCHEME).partition("/")
    parse_bucket_url(f"{OBJECT_SCHEME}{bucket}")
    if not key:
        raise LocationError(f"{url!r} names a bucket but no object key")
    return ObjectRef(bucket=bucket, key=key)


def object_url_problem(url: str) -> str | None:
    """Why `url` names no object (None: it names one): the check every producer of a message
    with an s3:// source makes."""
    try:
        parse_object_url(url)
    except LocationError as exc:
        return str(exc)
    return None
