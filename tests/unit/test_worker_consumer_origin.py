"""Where the worker's consumer span hangs (the contract, "⚑ Observability"): a task or an upload
continues its producer's trace; a batch item is a trace of its own, linked to its chunk's publish
span, so a 1,000,000-item batch is not one trace."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from imagebatch.worker.tracing import consumer_origin

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{SPAN}-01"


def parent_of(headers: dict[str, object] | None, batch: str | None) -> str | None:
    parent, _links = consumer_origin(headers, batch=batch)
    context = trace.get_current_span(parent).get_span_context()
    return f"{context.trace_id:032x}-{context.span_id:016x}" if context.is_valid else None


def links_of(headers: dict[str, object] | None, batch: str | None) -> list[str]:
    _parent, links = consumer_origin(headers, batch=batch)
    return [f"{link.context.trace_id:032x}-{link.context.span_id:016x}" for link in links]


@pytest.mark.parametrize(
    ("headers", "batch", "parent", "links"),
    [
        # a task or an upload: the api's publish span is the parent, nothing is linked
        ({"traceparent": TRACEPARENT}, None, f"{TRACE}-{SPAN}", []),
        ({"traceparent": TRACEPARENT.encode()}, None, f"{TRACE}-{SPAN}", []),
        # a batch item: a new trace, linked to the chunk's publish span
        ({"traceparent": TRACEPARENT}, "ns/photos", None, [f"{TRACE}-{SPAN}"]),
        # no trace context, or a broken one: a new trace and no link
        (None, None, None, []),
        ({}, "ns/photos", None, []),
        ({"traceparent": "00-not-a-trace-01"}, "ns/photos", None, []),
    ],
)
def test_a_delivery_continues_or_links_to_its_producer(
    headers: dict[str, object] | None, batch: str | None, parent: str | None, links: list[str]
) -> None:
    assert parent_of(headers, batch) == parent
    assert links_of(headers, batch) == links
