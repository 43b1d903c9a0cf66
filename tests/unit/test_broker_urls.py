"""`RABBIT_URL` may name the nodes of one cluster; every service reads it the same way
(`imagebatch.core.broker.broker_urls`) and tries the nodes in turn (`in_turn`)."""

from __future__ import annotations

import asyncio

import pytest

from imagebatch.core.broker import ClusterConnection, broker_urls, in_turn

A = "amqp://guest:guest@rabbit-0:5672/"
B = "amqp://guest:guest@rabbit-1:5672/"
C = "amqps://user:p%2Cw@rabbit-2:5671/vhost"


@pytest.mark.parametrize(
    ("setting", "urls"),
    [
        ("amqp://guest:guest@localhost:5672/", ("amqp://guest:guest@localhost:5672/",)),
        (f"{A},{B}", (A, B)),
        (f" {A} , {B},{C} ", (A, B, C)),
        (f"{A},,{B},", (A, B)),
    ],
    ids=["one URL", "two nodes", "spaces around the commas", "blank entries ignored"],
)
def test_rabbit_url_names_its_nodes_in_order(setting: str, urls: tuple[str, ...]) -> None:
    assert broker_urls(setting) == urls


@pytest.mark.parametrize("setting", ["", " , ", f"{A},http://rabbit-1:15672/"])
def test_a_setting_without_broker_or_with_another_scheme_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="RABBIT_URL"):
        broker_urls(setting)


def test_the_error_does_not_show_the_password() -> None:
    with pytest.raises(ValueError, match="not an amqp URL") as caught:
        broker_urls("http://user:secret@rabbit:15672/")
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("first", "order"),
    [(0, (A, B, C)), (1, (B, C, A)), (2, (C, A, B)), (3, (A, B, C))],
)
def test_nodes_are_tried_in_turn_from_any_of_them(first: int, order: tuple[str, ...]) -> None:
    assert in_turn((A, B, C), first) == order


async def test_every_close_points_the_connection_at_the_next_node() -> None:
    connection = ClusterConnection((A, B, C))
    seen = [connection.url.host]
    for _ in range(3):
        closing = asyncio.get_running_loop().create_future()
        closing.set_exception(ConnectionError("refused"))
        await connection._on_connection_close(closing)
        seen.append(connection.url.host)
    assert seen == ["rabbit-0", "rabbit-1", "rabbit-2", "rabbit-0"]
    await connection.close()
