"""A job message survives encode → decode unchanged, including the seed's short form."""

from __future__ import annotations

import json

from imagebatch.core.messages import ImageJob, decode_job, encode_job


def test_short_form_job_is_encoded_short_and_decodes_short() -> None:
    job = ImageJob.model_validate(
        {"url": "http://example.test/a.jpg", "ops": ["thumbnail"], "id": "7"}
    )

    body = json.loads(encode_job(job))

    assert body == {
        "url": "http://example.test/a.jpg",
        "ops": ["thumbnail"],
        "id": "7",
        "batch": None,
        "output": None,
    }
    assert decode_job(encode_job(job)).short_form is True


def test_full_form_job_keeps_its_operations() -> None:
    job = ImageJob.model_validate(
        {"url": "http://example.test/a.jpg", "ops": [{"thumbnail": {"width": 64}}], "id": "t1"}
    )

    decoded = decode_job(encode_job(job))

    assert decoded == job
    assert decoded.short_form is False
    assert decoded.ops[0].thumbnail.width == 64
