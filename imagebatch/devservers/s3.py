"""A throwaway S3-compatible server: versitygw (Apache-2.0) with its `posix` backend serving a
temporary folder, on a free loopback port, with a root access key and secret of our own.

The binary comes from `S3_SERVER_DIR`, else from the cache `hack/s3/build.sh` (`make s3`) fills.
Each top-level folder under `data/` is a bucket and each object a file below it; versitygw keeps
an object's ETag, Content-Type and checksums in user extended attributes, so where the folder's
filesystem has none (some overlay and tmpfs mounts) the launcher gives it a sidecar folder for
them instead (`--sidecar`).

`stop()` and `start()` keep the folder and the port, so a test can take the store away for a
while (`with server.stopped(): …`) and get the same objects back at the same URL. Keep-alive is
on (versitygw's default closes every connection, which no real S3 does). The internal IAM
service is on too, with an empty folder: without it versitygw answers an unknown access key
with 404 `XAdminUserNotFound`, with it 403 `InvalidAccessKeyId`, as S3 does.

The few calls the launcher itself needs — create a bucket, list keys, list multipart uploads —
go through a small Signature V4 signer on the standard library, so that tests can check what a
client left in the store without trusting that same client.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import hmac
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagebatch.devservers.process import (
    OneProcessServer,
    find_cached,
    free_port,
    http_ok,
    spawn,
    wait_until,
)

BINARY = "versitygw"
HEALTH_PATH = "/health"
S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def find_versitygw() -> Path:
    """The `versitygw` binary from `S3_SERVER_DIR` or the build cache, or a clear error."""
    folder = find_cached(
        env="S3_SERVER_DIR", cache=BINARY, needs=[BINARY], what="the versitygw S3 server", make="s3"
    )
    return folder / BINARY


def supports_user_xattrs(folder: Path) -> bool:
    """Whether files in `folder` can carry `user.*` extended attributes (versitygw's metadata)."""
    probe = folder / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.imagebatch", b"1")
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()
    return True


@dataclass(frozen=True)
class S3Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class S3Server(OneProcessServer):
    """One versitygw on a free 127.0.0.1 port, serving its own folder, single root account.

    `stop()` ends the process and keeps the objects; `start()` brings the same store back on the
    same port; `close()` also removes the folder.
    """

    access_key: str = "imagebatch-test"
    secret_key: str = field(default_factory=lambda: os.urandom(16).hex())
    region: str = "us-east-1"
    port: int = field(default_factory=free_port)
    binary: Path = field(default_factory=find_versitygw)
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="imagebatch-s3-"))
        self.data = self.base / "data"
        self.data.mkdir()
        self.sidecar: Path | None = None
        if not supports_user_xattrs(self.data):
            self.sidecar = self.base / "meta"
            self.sidecar.mkdir()
        self.iam = self.base / "iam"
        self.iam.mkdir()
        self.log = self.base / "versitygw.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def aws_env(self) -> dict[str, str]:
        """The standard AWS variables (⚑ Storage) that point a worker or the api at this store."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def start(self) -> S3Server:
        """Start (or restart, keeping the objects) the server and wait until it answers."""
        began = time.monotonic()
        sidecar = ["--sidecar", str(self.sidecar)] if self.sidecar else []
        self._process = spawn(
            [
                str(self.binary),
                "--port",
                f"127.0.0.1:{self.port}",
                "--region",
                self.region,
                "--health",
                HEALTH_PATH,
                "--keep-alive",
                "--iam-dir",
                str(self.iam),
                "--quiet",
                "posix",
                *sidecar,
                str(self.data),
            ],
            log=self.log,
            # In the environment rather than argv, so the secret is not in `ps`.
            env={"ROOT_ACCESS_KEY": self.access_key, "ROOT_SECRET_KEY": self.secret_key},
            cwd=self.base,
        )
        wait_until(
            lambda: http_ok(self.endpoint_url + HEALTH_PATH),
            timeout=30,
            what="versitygw",
            process=self._process,
            log=self.log,
        )
        self.startup_seconds = time.monotonic() - began
        return self

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The store is away inside the block and back (same objects, same URL) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    # -- the few S3 calls the launcher makes itself --------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> S3Response:
        """One path-style request signed with Signature V4; any status is returned, not raised."""
        url, signed = sign_v4(
            method,
            self.endpoint_url,
            path,
            query=query or {},
            body=body,
            headers=headers or {},
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
        )
        request = urllib.request.Request(url, data=body or None, headers=signed, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return S3Response(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return S3Response(error.code, dict(error.headers), error.read())

    def _checked(
        self, method: str, path: str, query: Mapping[str, str] | None = None
    ) -> S3Response:
        response = self.request(method, path, query=query)
        if response.status >= 300:
            raise RuntimeError(
                f"{method} {path}: {response.status} {response.body.decode(errors='replace')}"
            )
        return response

    def create_bucket(self, name: str) -> str:
        """Create bucket `name` (owned by the root account) and return it."""
        self._checked("PUT", f"/{name}")
        return name

    def object_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in `bucket` under `prefix` (ListObjectsV2, all pages)."""
        keys: list[str] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self._checked("GET", f"/{bucket}", query=query).body)
            keys += [node.text or "" for node in root.iter(f"{S3_NAMESPACE}Key")]
            token = root.findtext(f"{S3_NAMESPACE}NextContinuationToken")
            if root.findtext(f"{S3_NAMESPACE}IsTruncated") != "true" or not token:
                return keys

    def multipart_uploads(self, bucket: str) -> list[str]:
        """The keys of the multipart uploads begun and neither completed nor aborted."""
        root = ET.fromstring(self._checked("GET", f"/{bucket}", query={"uploads": ""}).body)
        return [
            upload.findtext(f"{S3_NAMESPACE}Key") or ""
            for upload in root.iter(f"{S3_NAMESPACE}Upload")
        ]


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign_v4(
    method: str,
    endpoint: str,
    path: str,
    *,
    query: Mapping[str, str],
    body: bytes,
    headers: Mapping[str, str],
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime.datetime | None = None,
) -> tuple[str, dict[str, str]]:
    """The URL and headers of an AWS Signature V4 (service `s3`) request with a hashed body."""
    moment = now or datetime.datetime.now(datetime.UTC)
    stamp, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
    host = urllib.parse.urlsplit(endpoint).netloc
    canonical_path = urllib.parse.quote(path, safe="/-_.~")
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
    )
    payload = hashlib.sha256(body).hexdigest()
    signed = {
        **{k.lower(): v.strip() for k, v in headers.items()},
        "host": host,
        "x-amz-content-sha256": payload,
        "x-amz-date": stamp,
    }
    names = ";".join(sorted(signed))
    canonical = "\n".join(
        [
            method,
            canonical_path,
            canonical_query,
            "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
            names,
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    url = f"{endpoint}{canonical_path}" + (f"?{canonical_query}" if canonical_query else "")
    return url, signed
