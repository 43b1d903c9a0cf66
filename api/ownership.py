"""Whose jobs a caller may see through /images and /tasks/{id}.

With an authenticating AUTH_MODE (`kubernetes`, `token`) a caller sees the tasks and uploads it
created (`jobs.caller`) and the shared seed's rows (`images`, which /enqueue publishes for
everyone and which have no caller); another caller's tasks and uploads, and batch items (whose
readers Kubernetes RBAC decides, through /batches), answer 404 as if they did not exist. With
`none` every caller sees every job, as before authentication existed.
"""

from __future__ import annotations

from imagebatch.api.auth import Caller
from imagebatch.api.settings import AuthMode


def viewer_of(mode: AuthMode, caller: Caller) -> str | None:
    """The owner whose jobs `caller` sees, or None when it sees everyone's."""
    return None if mode == "none" else caller.name


def may_see(viewer: str | None, *, owner: str | None, kind: str) -> bool:
    """Whether a job of `kind` created by `owner` is shown to `viewer` (see the module)."""
    if viewer is None:
        return True
    if owner is None:
        return kind == "image"
    return owner == viewer
