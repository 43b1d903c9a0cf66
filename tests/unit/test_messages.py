"""The job message of the contract: what producers may send and what a worker accepts."""

from __future__ import annotations

import json

import pytest

from imagebatch.core.errors import PermanentError
from imagebatch.core.messages import (
    ImageJob,
    Operation,
    Thumbnail,
    decode_job,
    encode_items,
    encode_job,
    item_problem,
)


def body(**fields: object) -> bytes:
    return json.dumps({"url": "https://example.test/a.jpg", "id": "42", **fields}).encode()


def test_the_seed_short_form_means_one_default_thumbnail_at_a_flat_path() -> None:
    job = decode_job(body(ops=["thumbnail"], batch=None))
    assert job.short_form
    assert job.ops[0].thumbnail == Thumbnail(
        width=256, height=256, fit="contain", format="jpeg", quality=85
    )


def test_full_operation_objects_are_accepted_and_defaults_filled() -> None:
    job = decode_job(
        body(
            ops=[{"thumbnail": {"width": 128, "format": "webp"}}],
            batch="default/photos",
            output="photos",
        )
    )
    assert not job.short_form
    assert job.ops[0].thumbnail.width == 128
    assert job.ops[0].thumbnail.height == 256
    assert job.ops[0].thumbnail.extension == "webp"
    assert job.output == "photos"


def test_a_short_form_inside_a_batch_is_not_the_seed_layout() -> None:
    assert not decode_job(body(ops=["thumbnail"], batch="ns/b")).short_form


def test_encoding_round_trips_and_never_leaks_internal_fields() -> None:
    job = ImageJob(url="https://example.test/a.jpg", id="abc", output="x/y")
    data = json.loads(encode_job(job))
    assert set(data) == {"url", "ops", "id", "batch", "output"}
    assert decode_job(encode_job(job)) == job


def test_numeric_ids_from_the_seed_table_are_accepted_as_text() -> None:
    assert decode_job(json.dumps({"url": "http://h.test/1.jpg", "id": 7}).encode()).id == "7"


def test_upload_urls_name_a_stored_original() -> None:
    job = decode_job(body(url="upload:3f2a.png"))
    assert job.upload_name == "3f2a.png"


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (body(url="file:///etc/passwd"), "url"),
        (body(url="upload:../../etc/passwd"), "url"),
        (body(id="../../etc/passwd"), "id"),
        (body(id=""), "id"),
        (body(output="/abs/path"), "output"),
        (body(output="a/../../b"), "output"),
        (body(ops=[{"thumbnail": {"width": 0}}]), "ops"),
        (body(ops=[{"thumbnail": {"format": "gif"}}]), "ops"),
        (body(ops=["sharpen"]), "ops"),
        (body(ops=[]), "ops"),
        (json.dumps({"id": "1"}).encode(), "url"),
    ],
)
def test_malformed_messages_are_permanent_failures_that_say_what_is_wrong(
    raw: bytes, complaint: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        decode_job(raw)
    assert caught.value.code == "malformed"
    assert complaint in caught.value.reason


@pytest.mark.parametrize(
    "url",
    ["https://example.test/a.jpg", 'http://h/q?x="y"&z=ü', "http://h/" + "a" * 2000],
)
def test_a_batch_item_s_body_is_what_encode_job_writes(url: str) -> None:
    """The operator encodes millions of items from one template; the bytes must not differ."""
    template = ImageJob(
        url="https://template.invalid/",
        id="template",
        batch="ns/name",
        output="ns/name",
        ops=[Operation(thumbnail=Thumbnail(width=64, format="webp")), Operation()],
    )
    (body,) = encode_items(template, [("abc123-7", url)])
    assert body == encode_job(template.model_copy(update={"id": "abc123-7", "url": url}))
    assert decode_job(body) == ImageJob(**{**template.model_dump(), "id": "abc123-7", "url": url})


@pytest.mark.parametrize(
    ("job_id", "url", "problem"),
    [
        ("ok-1", "https://a.test/x.jpg", None),
        ("-bad", "https://a.test/x.jpg", "id must be"),
        ("ok-2", "ftp://a.test/x.jpg", "http:// or https://"),
        ("ok-3", "", "url must be"),
        ("ok-4", "https://a.test/" + "x" * 2048, "url must be"),
        ("ok-5", "s3://photos/2026/a.jpg", None),
        ("ok-6", "s3://photos", "no object key"),
        ("ok-7", "s3://Not_A_Bucket/a.jpg", "not a valid bucket name"),
    ],
)
def test_an_item_that_cannot_be_a_message_says_why(
    job_id: str, url: str, problem: str | None
) -> None:
    found = item_problem(job_id, url)
    assert (found is None) == (problem is None)
    if problem is not None:
        assert found is not None
        assert problem in found
