"""Create the buckets that OUTPUT_URL and UPLOADS_URL name, on the S3 server the standard AWS
variables point at: docker compose's one-shot `s3-buckets` service (docker-compose.s3.yml), which
runs this file in the ImageBatch image before the api and the workers start.

ImageBatch itself never creates a bucket (on a real store that is the operator's decision, with
its own policies); the local stack's empty store needs one. Running it again is harmless: a bucket
that is already ours counts as created. The request is signed with the small Signature V4 signer
of imagebatch.devservers.s3 (standard library only), always path-style, as every S3-compatible
server understands.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

from imagebatch.core.locations import parse_bucket_url
from imagebatch.devservers.s3 import sign_v4

URL_SETTINGS = ("OUTPUT_URL", "UPLOADS_URL")
ALREADY_OURS = "BucketAlreadyOwnedByYou"
ATTEMPTS = 10


def buckets(environ: dict[str, str]) -> list[str]:
    """The buckets of the s3:// location settings, each once, in the order named."""
    names = [
        parse_bucket_url(environ[name]).bucket
        for name in URL_SETTINGS
        if environ.get(name, "").startswith("s3://")
    ]
    return list(dict.fromkeys(names))


def create(bucket: str, environ: dict[str, str]) -> str:
    """PUT /<bucket>; returns what happened, raises RuntimeError with the server's answer."""
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ["AWS_ENDPOINT_URL"]
    url, headers = sign_v4(
        "PUT",
        endpoint.rstrip("/"),
        f"/{bucket}",
        query={},
        body=b"",
        headers={},
        access_key=environ["AWS_ACCESS_KEY_ID"],
        secret_key=environ["AWS_SECRET_ACCESS_KEY"],
        region=environ.get("AWS_REGION", "us-east-1"),
    )
    request = urllib.request.Request(url, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10):
            return "created"
    except urllib.error.HTTPError as error:
        code, message = s3_error(error.read())
        if error.code == 409 and code == ALREADY_OURS:
            return "already there"
        raise RuntimeError(f"PUT /{bucket}: {error.code} {code}: {message}") from error


def s3_error(body: bytes) -> tuple[str, str]:
    """The <Code> and <Message> of an S3 error document (the rest is for debugging servers)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", body.decode(errors="replace")[:200]
    return root.findtext("Code") or "", root.findtext("Message") or ""


def main() -> int:
    environ = dict(os.environ)
    for bucket in buckets(environ):
        for attempt in range(1, ATTEMPTS + 1):
            try:
                print(f"bucket {bucket}: {create(bucket, environ)}", flush=True)
                break
            except (urllib.error.URLError, ConnectionError) as error:
                # The server's healthcheck passed, but a restart may be under way: wait a little.
                if attempt == ATTEMPTS:
                    print(
                        f"bucket {bucket}: the S3 server did not answer: {error}", file=sys.stderr
                    )
                    return 1
                time.sleep(1)
            except RuntimeError as error:
                print(f"bucket {bucket}: {error}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
