"""A sample image server: deterministic, photo-like 1024x768 JPEGs over plain HTTP.

`make demo`, docker compose (`samples` service) and tests need images to thumbnail, but no
network beyond this machine: this server makes them. Each `/samples/<name>.jpg` is drawn from a
seed derived from the name (sky gradient, sun, mountain ridges, smooth grain), so the same name
always gives byte-identical JPEGs, and the bodies are sized and shaped like real photographs
(~100-200 KB, smooth gradients with fine texture) rather than noise that compresses and decodes
unlike photos. Rendered images are cached in memory.

    python -m imagebatch.devservers.samples --host 127.0.0.1 --port 8765

It binds where it is told (loopback by default; compose passes 0.0.0.0) and answers
`GET /healthz` for health checks; anything that is not a safe sample name is 404.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import random
import re
import signal
import sys
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from types import FrameType
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 1024, 768
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
JPEG_QUALITY = 88
CACHE_SIZE = 512
"""Rendered images kept in memory (~150 KB each); seed rows and demos use far fewer names."""

SAMPLE_PATH = re.compile(r"^/samples/(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,63})\.jpg$")
"""Letters, digits, `_` and `-`: nothing that could mean a path, a query or another format."""

Color = tuple[int, int, int]


def sample_name(path: str) -> str | None:
    """The sample a request path names, or None when it names none (→ 404)."""
    match = SAMPLE_PATH.match(urlsplit(path).path)
    return match.group("name") if match else None


def _rng(name: str) -> random.Random:
    """A generator seeded by the name alone, so every process draws the same picture."""
    return random.Random(hashlib.sha256(name.encode()).digest())


def _color(rng: random.Random, low: int, high: int) -> Color:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _mix(a: Color, b: Color, t: float) -> Color:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _sky(rng: random.Random) -> Image.Image:
    """A vertical gradient between two seeded colours, stretched from a 1-pixel-wide strip."""
    top, bottom = _color(rng, 20, 140), _color(rng, 120, 255)
    strip = Image.new("RGB", (1, HEIGHT))
    strip.putdata([_mix(top, bottom, y / (HEIGHT - 1)) for y in range(HEIGHT)])
    return strip.resize((WIDTH, HEIGHT))


def _ridge(rng: random.Random, base: int, roughness: int) -> list[tuple[float, float]]:
    """A mountain outline across the whole width, closed along the bottom edge."""
    points = [(0.0, float(HEIGHT))]
    y = float(base)
    for x in range(0, WIDTH + 64, 64):
        y = min(HEIGHT - 40.0, max(HEIGHT * 0.3, y + rng.uniform(-roughness, roughness)))
        points.append((float(x), y))
    points.append((float(WIDTH), float(HEIGHT)))
    return points


def _grain(rng: random.Random) -> Image.Image:
    """Seeded low-resolution noise, upscaled smoothly: texture like foliage or film grain."""
    small = (WIDTH // 4, HEIGHT // 4)
    noise = Image.frombytes("L", small, rng.randbytes(small[0] * small[1]))
    return noise.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC).convert("RGB")


def render(name: str) -> Image.Image:
    """The picture for `name`: sky, sun, three ridges of mountains, a little blur and grain."""
    rng = _rng(name)
    image = _sky(rng)
    draw = ImageDraw.Draw(image)
    sun_x, sun_y, radius = rng.randint(80, WIDTH - 80), rng.randint(60, 300), rng.randint(30, 90)
    draw.ellipse(
        (sun_x - radius, sun_y - radius, sun_x + radius, sun_y + radius),
        fill=_color(rng, 200, 255),
    )
    for layer in range(3):
        shade = _color(rng, 30 + 40 * layer, 90 + 50 * layer)
        draw.polygon(_ridge(rng, 380 + 110 * layer, 40 - 8 * layer), fill=shade)
    image = image.filter(ImageFilter.GaussianBlur(radius=2))
    return Image.blend(image, _grain(rng), alpha=0.12)


@functools.lru_cache(maxsize=CACHE_SIZE)
def sample_jpeg(name: str) -> bytes:
    """The JPEG bytes for `name`: rendered once per process, then served from memory."""
    out = BytesIO()
    render(name).save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


class SampleHandler(BaseHTTPRequestHandler):
    """GET/HEAD `/samples/<name>.jpg` and `/healthz`; keep-alive, quiet access log."""

    protocol_version = "HTTP/1.1"
    server_version = "imagebatch-samples/1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        if urlsplit(self.path).path == "/healthz":
            self._send(HTTPStatus.OK, b'{"ok": true}\n', "application/json", send_body=send_body)
            return
        name = sample_name(self.path)
        if name is None:
            self._send(
                HTTPStatus.NOT_FOUND,
                b"no such sample: use /samples/<letters, digits, _ or ->.jpg\n",
                "text/plain; charset=utf-8",
                send_body=send_body,
            )
            return
        body = sample_jpeg(name)
        etag = hashlib.sha256(body).hexdigest()[:32]
        self._send(
            HTTPStatus.OK,
            body,
            "image/jpeg",
            send_body=send_body,
            extra={"ETag": f'"{etag}"', "Cache-Control": "public, max-age=86400"},
        )

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        *,
        send_body: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a batch makes hundreds of requests and the log would drown everything else."""


def make_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A bound server (port 0: any free port, see `server_address`); call `serve_forever()`."""
    server = ThreadingHTTPServer((host, port), SampleHandler)
    server.daemon_threads = True
    return server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m imagebatch.devservers.samples",
        description="Serve deterministic 1024x768 sample JPEGs at /samples/<name>.jpg.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    return parser.parse_args(argv)


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (docker stop, Kubernetes) ends the server like Ctrl-C does: promptly, exit 0."""
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    server = make_server(args.host, args.port)
    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    print(f"samples: serving http://{host!s}:{port}/samples/<name>.jpg", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
