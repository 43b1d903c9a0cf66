"""Which of our dependencies failed is said by the call that failed, not by the exception's
type: asyncpg and aio-pika both raise OSError when their server goes away."""

from __future__ import annotations

import asyncpg
import pytest
from aio_pika.exceptions import AMQPConnectionError

from imagebatch.core.dependencies import failing_as
from imagebatch.core.errors import DependencyDown, PermanentError


@pytest.mark.parametrize(
    ("dependency", "raised"),
    [
        ("database", ConnectionRefusedError(111, "refused")),
        ("database", asyncpg.exceptions.CannotConnectNowError("starting up")),
        ("database", asyncpg.exceptions.ConnectionDoesNotExistError("closed")),
        ("database", TimeoutError()),
        ("broker", ConnectionResetError(104, "reset")),
        ("broker", AMQPConnectionError("gone")),
        ("broker", TimeoutError()),
    ],
)
def test_a_failing_call_names_the_dependency_it_called(
    dependency: str, raised: BaseException
) -> None:
    with pytest.raises(DependencyDown) as caught, failing_as(dependency):  # type: ignore[arg-type]
        raise raised
    assert caught.value.dependency == dependency
    assert caught.value.__cause__ is raised


def test_an_oserror_is_the_broker_s_when_a_broker_call_raised_it() -> None:
    with pytest.raises(DependencyDown) as caught, failing_as("broker"):
        raise ConnectionRefusedError(111, "refused")
    assert str(caught.value).startswith("broker unavailable")


def test_other_errors_pass_through_unchanged() -> None:
    error = PermanentError("not an image")
    with pytest.raises(PermanentError) as caught, failing_as("database"):
        raise error
    assert caught.value is error
