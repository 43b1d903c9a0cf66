"""`kubectl imagebatch failures/manifest --api URL`: what the plugin makes of the api's answers
(the shapes of DESIGN.md's "Batch operations"), without a server: it follows the `after`
cursor to the end, stops on a cursor that repeats, and reports the api's refusals."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest

from imagebatch.kubectl.api_client import ImageBatchApi
from imagebatch.kubectl.commands import failures, watch
from imagebatch.kubectl.errors import PluginError

FAILED = [
    {"id": f"item-{n}", "url": f"https://a.test/{n}.jpg", "status": "failed", "attempts": 3,
     "error": "http_404: Not\tFound", "outputs": []}
    for n in range(5)
]  # fmt: skip


def paged(pages: dict[str | None, tuple[int, int, str | None]]) -> httpx.MockTransport:
    """An api whose items answer `pages[after]` = (start, end, next cursor) of FAILED."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != "Bearer t0ken":
            return httpx.Response(401, json={"detail": "this api needs a caller"})
        assert request.url.path == "/batches/photos/items"
        assert request.url.params["status"] == "failed"
        assert request.url.params["namespace"] == "ns"
        start, end, after = pages[request.url.params.get("after")]
        return httpx.Response(200, json={"items": FAILED[start:end], "after": after})

    return httpx.MockTransport(answer)


class OneBatch:
    namespace = "ns"

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def get(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": self.status}

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("failures changes nothing")


def test_failures_with_the_api_lists_every_failed_item_across_pages() -> None:
    transport = paged({None: (0, 2, "c2"), "c2": (2, 4, "c4"), "c4": (4, 5, None)})
    api = ImageBatchApi("http://api.test/", "t0ken", "ns", transport=transport)
    batch = OneBatch(
        {"phase": "Succeeded", "total": 50, "succeeded": 45, "failed": 5,
         "failureReasons": [{"reason": "http_404", "count": 5}]}
    )  # fmt: skip
    out = io.StringIO()

    assert failures(batch, "photos", out, api) == 0

    lines = out.getvalue().splitlines()
    assert lines[:3] == ["imagebatch photos: 5 failed of 50 (Succeeded)", "REASON     COUNT",
                         "http_404   5"]  # fmt: skip
    assert lines[4] == "ID\tATTEMPTS\tERROR\tURL"
    assert lines[5:] == [
        f"item-{n}\t3\thttp_404: Not Found\thttps://a.test/{n}.jpg" for n in range(5)
    ]


def test_a_cursor_that_comes_back_stops_the_listing_with_an_error() -> None:
    transport = paged({None: (0, 2, "c2"), "c2": (2, 4, "c2")})
    api = ImageBatchApi("http://api.test", "t0ken", "ns", transport=transport)

    with pytest.raises(PluginError, match="cursor 'c2' twice"):
        list(api.failed_items("photos"))


def test_the_api_s_refusal_is_reported_with_its_reason() -> None:
    api = ImageBatchApi("http://api.test", "wrong", "ns", transport=paged({}))

    with pytest.raises(PluginError, match=r"answered 401 .*: this api needs a caller"):
        list(api.failed_items("photos"))


def test_the_manifest_s_lines_are_passed_through() -> None:
    lines = [json.dumps({"id": f"item-{n}", "status": "completed"}) for n in range(3)]
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, text="\n".join(lines) + "\n")
    )
    api = ImageBatchApi("http://api.test", None, "ns", transport=transport)

    assert list(api.manifest_lines("photos")) == lines


class Progressing:
    """A batch whose status moves on at each look."""

    namespace = "ns"

    def __init__(self, *statuses: dict[str, Any]) -> None:
        self.statuses = list(statuses)

    def get(self, name: str) -> dict[str, Any]:
        return {"status": self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]}

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("watch changes nothing")


def test_watch_on_a_terminal_redraws_one_line_and_ends_it() -> None:
    batch = Progressing(
        {"phase": "Running", "total": 4, "succeeded": 1},
        {"phase": "Running", "total": 4, "succeeded": 3},
        {"phase": "Succeeded", "total": 4, "succeeded": 4},
    )
    ticks = iter([10.0, 12.0, 13.0])
    out = io.StringIO()

    code = watch(batch, "photos", out, live=True, clock=lambda: next(ticks), sleep=lambda _: None)

    assert code == 0
    redraws = out.getvalue().split("\r")[1:]
    assert [r.split("] ")[1].split(" (")[0] for r in redraws] == ["1/4", "3/4", "4/4"]
    assert redraws[-1].endswith("1.0 images/s  Succeeded\x1b[K\n")
