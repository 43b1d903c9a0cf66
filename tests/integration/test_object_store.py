"""The core Store against a real S3 server (versitygw) and a real folder: the same promises.

Whole objects or none, never an overwrite, a missing key is None, and the store's own failures
(wrong credentials, a missing bucket, the server gone) are DependencyDown with a reason a
person can act on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebatch.core.errors import DependencyDown
from imagebatch.core.locations import FileLocation, parse_bucket_url
from imagebatch.core.objectstore import Buckets, S3Settings, Timeouts
from imagebatch.core.stores import FileStore, ObjectStore, Store
from imagebatch.devservers.s3 import S3Server

FAST = Timeouts(connect=1.0, request=5.0, retries=0, retry_window=1.0)


def s3_settings(server: S3Server, **overrides: str) -> S3Settings:
    values = {key.lower(): value for key, value in server.aws_env().items()}
    return S3Settings(**{**values, **overrides})


def bucket_store(server: S3Server, url: str, **overrides: str) -> ObjectStore:
    return ObjectStore(parse_bucket_url(url), Buckets(s3_settings(server, **overrides), FAST))


@pytest.fixture(params=["bucket", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "folder":
        return FileStore(FileLocation(tmp_path / "out"))
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return bucket_store(server, f"s3://{bucket}/thumbs")


async def test_an_object_is_stored_whole_and_never_overwritten(store: Store) -> None:
    assert await store.put_new("b/1_256x256.jpg", b"first", "image/jpeg") is True
    assert await store.put_new("b/1_256x256.jpg", b"second", "image/jpeg") is False
    assert await store.read("b/1_256x256.jpg", 1024) == b"first"
    assert await store.size("b/1_256x256.jpg") == len(b"first")
    opened = await store.open("b/1_256x256.jpg")
    assert opened is not None
    assert opened.size == 5
    assert b"".join([chunk async for chunk in opened.chunks]) == b"first"


async def test_a_missing_key_is_none_not_an_error(store: Store) -> None:
    assert await store.read("nope.jpg", 10) is None
    assert await store.open("nope.jpg") is None
    assert await store.size("nope.jpg") is None
    await store.delete("nope.jpg")


async def test_reading_more_than_the_limit_is_refused(store: Store) -> None:
    await store.put_new("big.jpg", b"x" * 100, "image/jpeg")
    with pytest.raises(ValueError, match="more than 10"):
        await store.read("big.jpg", 10)


async def test_an_object_keeps_its_content_type_under_the_key_prefix(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = bucket_store(s3_server, f"s3://{s3_bucket}/thumbs/")
    await store.put_new("ns/b/7_64x64.webp", b"RIFF....WEBP", "image/webp")
    assert s3_server.object_keys(s3_bucket) == ["thumbs/ns/b/7_64x64.webp"]
    response = s3_server.request("HEAD", f"/{s3_bucket}/thumbs/ns/b/7_64x64.webp")
    assert response.headers["Content-Type"] == "image/webp"
    assert store.describe("ns/b/7_64x64.webp") == f"s3://{s3_bucket}/thumbs/ns/b/7_64x64.webp"
    assert s3_server.multipart_uploads(s3_bucket) == []


async def test_a_folder_store_leaves_no_temp_file(tmp_path: Path) -> None:
    store = FileStore(FileLocation(tmp_path))
    await store.put_new("a/b.jpg", b"data", "image/jpeg")
    await store.put_new("a/b.jpg", b"other", "image/jpeg")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.jpg"]
    assert store.describe("a/b.jpg") == "a/b.jpg"


async def test_wrong_credentials_are_an_outage_that_names_them(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = bucket_store(s3_server, f"s3://{s3_bucket}", aws_secret_access_key="not-the-secret")
    for call in (store.probe(), store.put_new("k.jpg", b"x", "image/jpeg"), store.read("k", 9)):
        with pytest.raises(DependencyDown, match="credentials refused") as caught:
            await call
        assert caught.value.dependency == "output store"


async def test_a_missing_bucket_is_an_outage_that_names_it(s3_server: S3Server) -> None:
    store = bucket_store(s3_server, "s3://no-such-bucket-here")
    for call in (store.probe(), store.put_new("k.jpg", b"x", "image/jpeg")):
        with pytest.raises(DependencyDown, match="'no-such-bucket-here' does not exist"):
            await call


async def test_a_stopped_server_is_an_outage_and_the_objects_are_back_after_it(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = bucket_store(s3_server, f"s3://{s3_bucket}")
    await store.put_new("kept.jpg", b"kept", "image/jpeg")
    with s3_server.stopped():
        with pytest.raises(DependencyDown, match="cannot reach the object store"):
            await store.put_new("new.jpg", b"x", "image/jpeg")
        with pytest.raises(DependencyDown, match="cannot reach the object store"):
            await store.probe()
    await store.probe()
    assert await store.read("kept.jpg", 100) == b"kept"
