"""The sample image server that `make demo` and docker compose point batches at: started the way
they start it (`python -m imagebatch.devservers.samples --host --port`), it serves decodable
1024x768 JPEGs, the same bytes for the same name every time, and 404 for anything else."""

from __future__ import annotations

import http.client
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from PIL import Image

from imagebatch.devservers.process import free_port, stop_group, tcp_open, wait_until
from imagebatch.devservers.samples import DEFAULT_HOST, DEFAULT_PORT, parse_args, sample_name

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def samples_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("samples") / "samples.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagebatch.devservers.samples",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: tcp_open("127.0.0.1", port),
            timeout=30,
            what="sample server",
            process=process,
            log=log,
        )
        yield port
    finally:
        stop_group(process)
    assert process.returncode == 0, "SIGTERM should stop the server cleanly"


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["astronaut", "motorcycle_left", "photo-0001", "photo-0300"])
def test_a_sample_is_a_1024x768_jpeg(samples_port: int, name: str) -> None:
    status, headers, body = get(samples_port, f"/samples/{name}.jpg")

    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert int(headers["Content-Length"]) == len(body)
    with Image.open(BytesIO(body)) as image:
        assert image.format == "JPEG"
        assert image.size == (1024, 768)
        image.load()  # decodes completely, not just the header
    assert 50_000 < len(body) < 400_000, "sized like a photograph, not like noise or a flat fill"


def test_the_same_name_gives_the_same_bytes_and_other_names_differ(samples_port: int) -> None:
    first = get(samples_port, "/samples/coffee.jpg")[2]
    again = get(samples_port, "/samples/coffee.jpg")[2]
    other = get(samples_port, "/samples/chelsea.jpg")[2]

    assert first == again
    assert first != other


def test_head_answers_with_the_headers_of_get_and_no_body(samples_port: int) -> None:
    _, get_headers, body = get(samples_port, "/samples/rocket.jpg")
    status, head_headers, head_body = get(samples_port, "/samples/rocket.jpg", method="HEAD")

    assert status == 200
    assert head_body == b""
    assert head_headers["Content-Length"] == str(len(body))
    assert head_headers["ETag"] == get_headers["ETag"]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/samples/",
        "/samples/.jpg",
        "/samples/coffee.png",
        "/samples/../etc/passwd.jpg",
        "/samples/%2e%2e%2fsecret.jpg",
        "/samples/a/b.jpg",
        "/samples/.hidden.jpg",
        "/samples/" + "x" * 65 + ".jpg",
        "/other/coffee.jpg",
    ],
)
def test_anything_but_a_safe_sample_name_is_404(samples_port: int, path: str) -> None:
    assert get(samples_port, path)[0] == 404


def test_healthz_answers_for_container_health_checks(samples_port: int) -> None:
    status, headers, body = get(samples_port, "/healthz")

    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body.strip() == b'{"ok": true}'


def test_a_query_string_does_not_change_the_sample() -> None:
    assert sample_name("/samples/coffee.jpg?size=large") == "coffee"


def test_it_binds_to_loopback_unless_told_otherwise() -> None:
    assert parse_args([]).host == DEFAULT_HOST == "127.0.0.1"
    assert parse_args(["--host", "0.0.0.0", "--port", "0"]).host == "0.0.0.0"


def test_the_example_batch_names_only_samples_the_server_has() -> None:
    example = yaml.safe_load((REPO / "examples" / "imagebatch.yaml").read_text())
    urls = example["spec"]["source"]["urls"]

    assert urls
    for url in urls:
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("127.0.0.1", DEFAULT_PORT), url
        assert sample_name(parts.path) is not None, url
