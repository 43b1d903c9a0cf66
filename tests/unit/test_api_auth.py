"""Who the api takes a request to be from, in each AUTH_MODE: the decisions as tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagebatch.api.auth import (
    AuthFailure,
    Caller,
    NamespaceRefused,
    TokenFileError,
    anonymous,
    batch_namespace,
    bearer_token,
    fingerprint,
    parse_tokens,
    review_caller,
    token_caller,
)
from imagebatch.api.authenticators import KubernetesTokens
from imagebatch.api.settings import ApiSettings

TOKEN_A = "a-token-for-team-a-0123456789"
TOKEN_B = "a-token-for-team-b-9876543210"
TABLE = parse_tokens(f"# tokens of the teams\n\n{TOKEN_A} team-a\n  {TOKEN_B}   team-b  \n")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_a_bearer_token_is_read_from_the_header_and_its_absence_is_no_error_code(
    header: str | None, expected: str | None
) -> None:
    result = bearer_token(header)
    if expected is None:
        assert isinstance(result, AuthFailure)
        assert result.error is None
        assert result.challenge() == 'Bearer realm="imagebatch"'
    else:
        assert result == expected


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "Token abc"])
def test_any_other_authorization_is_an_invalid_request(header: str) -> None:
    result = bearer_token(header)
    assert isinstance(result, AuthFailure)
    assert result.error == "invalid_request"
    assert result.challenge() == 'Bearer realm="imagebatch", error="invalid_request"'


@pytest.mark.parametrize(
    ("token", "namespace"),
    [(TOKEN_A, "team-a"), (TOKEN_B, "team-b")],
)
def test_a_static_token_is_a_caller_bound_to_its_namespace(token: str, namespace: str) -> None:
    caller = token_caller(token, TABLE)
    assert caller == Caller(
        name=f"token:{namespace}:{fingerprint(token)}", namespace=namespace, only_namespace=True
    )
    assert token not in caller.name


@pytest.mark.parametrize("token", [TOKEN_A[:-1], TOKEN_A + "x", TOKEN_A.upper(), "x" * 40])
def test_an_unknown_static_token_is_an_invalid_token(token: str) -> None:
    result = token_caller(token, TABLE)
    assert isinstance(result, AuthFailure)
    assert result.error == "invalid_token"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("only-a-token-without-namespace", "line 1: expected `<token> <namespace>`"),
        ("# ok\nshort team-a", "line 2: a token needs at least 16 characters"),
        (f"{TOKEN_A} Team_A", "line 1: 'Team_A' is not a namespace name"),
        (f"{TOKEN_A} team-a\n{TOKEN_A} team-b", "line 2: the token is listed twice"),
        (f"{TOKEN_A} team-a extra", "line 1: expected `<token> <namespace>`"),
    ],
)
def test_a_broken_tokens_file_names_the_line(text: str, problem: str) -> None:
    with pytest.raises(TokenFileError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_tokens(text)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            {"authenticated": True, "user": {"username": "system:serviceaccount:team-a:ci"}},
            Caller("system:serviceaccount:team-a:ci", namespace="team-a", kube_token="t"),
        ),
        (
            {"authenticated": True, "user": {"username": "jane@example.com", "groups": []}},
            Caller("jane@example.com", namespace=None, kube_token="t"),
        ),
    ],
)
def test_a_reviewed_token_is_the_user_the_api_server_names(
    status: dict[str, Any], expected: Caller
) -> None:
    assert review_caller("t", status) == expected


@pytest.mark.parametrize(
    "status",
    [
        {"authenticated": False, "error": "token expired"},
        {},
        {"authenticated": True},
        {"authenticated": True, "user": {"username": ""}},
        {"authenticated": "true", "user": {"username": "x"}},
    ],
)
def test_a_token_the_api_server_does_not_vouch_for_is_invalid(status: dict[str, Any]) -> None:
    result = review_caller("t", status)
    assert isinstance(result, AuthFailure)
    assert result.error == "invalid_token"


def test_anonymous_callers_are_told_apart_by_their_address() -> None:
    assert anonymous("10.0.0.7") != anonymous("10.0.0.8")
    assert anonymous(None).name == "anonymous@unknown"


A, B = "team-a", "team-b"
BOUND = Caller("token:team-a:x", namespace="team-a", only_namespace=True)
SA = Caller("system:serviceaccount:team-a:ci", namespace="team-a", kube_token="t")
USER = Caller("jane", kube_token="t")


@pytest.mark.parametrize(
    ("caller", "requested", "expected"),
    [
        (BOUND, None, "team-a"),
        (BOUND, "team-a", "team-a"),
        (BOUND, "team-b", NamespaceRefused(f"this token may only use namespace {A!r}, not {B!r}")),
        (SA, None, "team-a"),
        (SA, "team-b", "team-b"),  # the API server decides, with the caller's token
        (USER, None, "default-ns"),
        (USER, "team-b", "team-b"),
        (anonymous("1.2.3.4"), None, "default-ns"),
    ],
)
def test_the_namespace_of_a_batch_call(
    caller: Caller, requested: str | None, expected: str | NamespaceRefused
) -> None:
    assert batch_namespace(caller, requested, "default-ns") == expected


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [
        ({}, "token"),
        ({"kubeconfig": Path("/k")}, "kubernetes"),
        ({"kubernetes_service_host": "10.0.0.1"}, "kubernetes"),
        ({"auth_mode": "token", "kubeconfig": Path("/k")}, "token"),
        ({"auth_mode": "none"}, "none"),
    ],
)
def test_an_unset_auth_mode_never_means_none(overrides: dict[str, Any], mode: str) -> None:
    values: dict[str, Any] = {
        "auth_mode": None,
        "kubeconfig": None,
        "kubernetes_service_host": None,
        **overrides,
    }
    assert ApiSettings(**values).effective_auth_mode() == mode


async def test_token_reviews_are_reused_for_a_while_then_asked_again() -> None:
    now = [100.0]
    asked: list[str] = []

    async def review(token: str) -> dict[str, Any]:
        asked.append(token)
        return {"authenticated": token == "good", "user": {"username": "jane"}}

    tokens = KubernetesTokens(review, cache_seconds=10, clock=lambda: now[0])
    for header in ("Bearer good", "Bearer good", "Bearer bad", "Bearer bad"):
        await tokens.authenticate(header, None)
    now[0] += 11
    answer = await tokens.authenticate("Bearer good", None)

    assert asked == ["good", "bad", "good"]
    assert answer == Caller("jane", kube_token="good")
    assert isinstance(await tokens.authenticate(None, None), AuthFailure)
    assert asked == ["good", "bad", "good"]


def test_a_caller_s_kubernetes_token_never_shows_in_its_repr() -> None:
    status = {"authenticated": True, "user": {"username": "jane"}}
    caller = review_caller("secret-token-value", status)
    assert isinstance(caller, Caller)
    assert caller.kube_token == "secret-token-value"
    assert "secret-token-value" not in repr(caller)
