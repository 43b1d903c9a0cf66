"""The S3 server the suite runs against (versitygw, `posix` backend) is a real S3 store: what the
storage code relies on — conditional puts, multipart bookkeeping, the error codes of wrong
credentials and missing buckets, refused connections while it is down — holds there.

Spoken to through aiobotocore (a test extra) with retries off, so each call is one request; the
launcher's own signed calls (`object_keys`, `multipart_uploads`) check what a client left."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, EndpointConnectionError

from imagebatch.devservers.s3 import S3Server
from tests.support.photos import photos

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]


@pytest.fixture
def s3_client(s3_server: S3Server) -> ClientFactory:
    """Opens an aiobotocore S3 client on the test server; keyword arguments override its
    credentials."""

    def open_client(**overrides: str) -> AbstractAsyncContextManager[Any]:
        options: dict[str, Any] = {
            "endpoint_url": s3_server.endpoint_url,
            "aws_access_key_id": s3_server.access_key,
            "aws_secret_access_key": s3_server.secret_key,
            "region_name": s3_server.region,
            "config": AioConfig(
                retries={"total_max_attempts": 1},
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=10,
            ),
            **overrides,
        }
        client: AbstractAsyncContextManager[Any] = get_session().create_client("s3", **options)
        return client

    return open_client


@pytest.fixture
async def s3(s3_client: ClientFactory) -> AsyncIterator[Any]:
    async with s3_client() as client:
        yield client


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = raised.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


async def test_an_object_put_is_read_back_with_its_content_type(s3: Any, s3_bucket: str) -> None:
    photo = photos((256, 192))[0]
    await s3.put_object(
        Bucket=s3_bucket, Key="batch/a_256x192.jpg", Body=photo, ContentType="image/jpeg"
    )

    got = await s3.get_object(Bucket=s3_bucket, Key="batch/a_256x192.jpg")
    async with got["Body"] as body:
        assert await body.read() == photo
    assert got["ContentType"] == "image/jpeg"
    head = await s3.head_object(Bucket=s3_bucket, Key="batch/a_256x192.jpg")
    assert head["ContentLength"] == len(photo)
    assert head["ContentType"] == "image/jpeg"


async def test_listing_pages_through_every_key_under_a_prefix(
    s3: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    keys = [f"batch/{i:03d}.jpg" for i in range(25)]
    for key in keys:
        await s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    await s3.put_object(Bucket=s3_bucket, Key="elsewhere/1.jpg", Body=b"x")

    listed: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=s3_bucket, Prefix="batch/", MaxKeys=10):
        listed += [entry["Key"] for entry in page.get("Contents", [])]
    assert listed == keys
    assert s3_server.object_keys(s3_bucket, "batch/") == keys


async def test_an_aborted_multipart_upload_leaves_nothing_behind(
    s3: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    begun = await s3.create_multipart_upload(Bucket=s3_bucket, Key="big.jpg")
    await s3.upload_part(
        Bucket=s3_bucket, Key="big.jpg", UploadId=begun["UploadId"], PartNumber=1, Body=b"x" * 1024
    )
    uploads = await s3.list_multipart_uploads(Bucket=s3_bucket)
    assert [u["Key"] for u in uploads["Uploads"]] == ["big.jpg"]
    assert s3_server.multipart_uploads(s3_bucket) == ["big.jpg"]

    await s3.abort_multipart_upload(Bucket=s3_bucket, Key="big.jpg", UploadId=begun["UploadId"])

    assert (await s3.list_multipart_uploads(Bucket=s3_bucket)).get("Uploads", []) == []
    assert s3_server.multipart_uploads(s3_bucket) == []
    assert s3_server.object_keys(s3_bucket) == []


async def test_a_conditional_put_never_replaces_an_existing_object(s3: Any, s3_bucket: str) -> None:
    first = await s3.put_object(Bucket=s3_bucket, Key="once.jpg", Body=b"first", IfNoneMatch="*")

    with pytest.raises(ClientError) as raised:
        await s3.put_object(Bucket=s3_bucket, Key="once.jpg", Body=b"second", IfNoneMatch="*")

    assert error_of(raised) == (412, "PreconditionFailed")
    got = await s3.get_object(Bucket=s3_bucket, Key="once.jpg")
    async with got["Body"] as body:
        assert await body.read() == b"first"
    assert got["ETag"] == first["ETag"]


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({"aws_secret_access_key": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"aws_access_key_id": "nobody"}, "InvalidAccessKeyId"),
    ],
)
async def test_wrong_credentials_are_refused_with_403(
    s3_client: ClientFactory, s3_bucket: str, credentials: dict[str, str], code: str
) -> None:
    async with s3_client(**credentials) as client:
        with pytest.raises(ClientError) as raised:
            await client.put_object(Bucket=s3_bucket, Key="x.jpg", Body=b"x")
    assert error_of(raised) == (403, code)


async def test_a_missing_bucket_answers_404_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as raised:
        await s3.put_object(Bucket="no-such-bucket-here", Key="x.jpg", Body=b"x")
    assert error_of(raised) == (404, "NoSuchBucket")


async def test_a_stopped_server_refuses_connections_and_comes_back_with_its_objects(
    s3_client: ClientFactory, s3_server: S3Server, s3_bucket: str
) -> None:
    async with s3_client() as client:
        await client.put_object(Bucket=s3_bucket, Key="kept.jpg", Body=b"kept")

        with s3_server.stopped():
            assert not s3_server.running
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", s3_server.port), timeout=2).close()
            with pytest.raises(EndpointConnectionError):
                await client.head_object(Bucket=s3_bucket, Key="kept.jpg")

        # The same client (its pooled connections died with the old process) works again.
        got = await client.get_object(Bucket=s3_bucket, Key="kept.jpg")
        async with got["Body"] as body:
            assert await body.read() == b"kept"
    assert s3_server.object_keys(s3_bucket) == ["kept.jpg"]
