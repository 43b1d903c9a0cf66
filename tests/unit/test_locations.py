"""Storage URLs as every service reads them: OUTPUT_URL, UPLOADS_URL, spec.output.url and
s3:// sources (imagebatch/core/locations.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebatch.core.locations import (
    BucketLocation,
    FileLocation,
    LocationError,
    ObjectRef,
    parse_location,
    parse_object_url,
    resolve_location,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///data", FileLocation(Path("/data"))),
        ("file://localhost/srv/thumbs", FileLocation(Path("/srv/thumbs"))),
        ("/data", FileLocation(Path("/data"))),
        ("s3://thumbs", BucketLocation("thumbs", "")),
        ("s3://thumbs/", BucketLocation("thumbs", "")),
        ("s3://thumbs/out/2026/", BucketLocation("thumbs", "out/2026")),
        ("s3://my.bucket-1/a", BucketLocation("my.bucket-1", "a")),
    ],
)
def test_a_storage_url_names_a_folder_or_a_bucket_and_prefix(url: str, expected: object) -> None:
    assert parse_location(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("relative/path", "absolute path"),
        ("file://host/data", "names no host"),
        ("gs://bucket", "only file:// and s3://"),
        ("s3://UPPER", "not a valid bucket name"),
        ("s3://ab", "not a valid bucket name"),
        ("s3://bucket/../escape", "may not contain"),
        ("s3://bucket/a//b", "may not contain"),
    ],
)
def test_a_url_naming_no_usable_place_says_why(url: str, why: str) -> None:
    with pytest.raises(LocationError, match=why):
        parse_location(url)


def test_keys_and_recorded_paths_follow_the_file_layout_under_the_prefix() -> None:
    bucket = BucketLocation("thumbs", "fleet")
    assert bucket.key("ns/b/1_256x256.jpg") == "fleet/ns/b/1_256x256.jpg"
    assert bucket.describe("ns/b/1_256x256.jpg") == "s3://thumbs/fleet/ns/b/1_256x256.jpg"
    assert BucketLocation("thumbs").describe("1.jpg") == "s3://thumbs/1.jpg"
    assert FileLocation(Path("/data")).describe("ns/b/1_256x256.jpg") == "ns/b/1_256x256.jpg"
    assert bucket.url == "s3://thumbs/fleet"
    assert FileLocation(Path("/data")).url == "file:///data"


def test_the_url_setting_wins_over_the_older_folder_setting() -> None:
    assert resolve_location("s3://bkt/p", Path("/x"), "file:///data") == BucketLocation("bkt", "p")
    assert resolve_location(None, Path("/x"), "file:///data") == FileLocation(Path("/x"))
    assert resolve_location("", None, "file:///data") == FileLocation(Path("/data"))


def test_a_source_url_names_one_object() -> None:
    assert parse_object_url("s3://photos/2026/cat.jpg") == ObjectRef("photos", "2026/cat.jpg")
    assert parse_object_url("s3://photos/2026/cat.jpg").url == "s3://photos/2026/cat.jpg"
    with pytest.raises(LocationError, match="no object key"):
        parse_object_url("s3://photos/")
