"""Whose jobs a caller sees through /images and /tasks/{id}: its own tasks and uploads and the
shared seed's rows when callers are authenticated; everything when they are not."""

from __future__ import annotations

import pytest

from imagebatch.api.auth import Caller
from imagebatch.api.ownership import may_see, viewer_of


@pytest.mark.parametrize(
    ("viewer", "owner", "kind", "seen"),
    [
        ("alice", "alice", "task", True),
        ("alice", "alice", "upload", True),
        ("alice", "bob", "task", False),
        ("alice", "bob", "upload", False),
        ("alice", None, "image", True),  # the seed's rows: /enqueue publishes them for everyone
        ("alice", None, "batch", False),  # batch items: RBAC decides, through /batches
        (None, "bob", "task", True),  # AUTH_MODE=none: everyone sees everything
        (None, None, "batch", True),
    ],
)
def test_who_sees_which_job(viewer: str | None, owner: str | None, kind: str, seen: bool) -> None:
    assert may_see(viewer, owner=owner, kind=kind) is seen


def test_only_an_unauthenticated_api_shows_everyone_s_jobs() -> None:
    caller = Caller(name="token:team-a:0123456789ab")
    assert viewer_of("none", caller) is None
    assert viewer_of("token", caller) == caller.name
    assert viewer_of("kubernetes", caller) == caller.name
