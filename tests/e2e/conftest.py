"""Fixtures of the operator tests: the operator process, the connections Secret, batches and
their local workers (tests/support/operator.py)."""

from tests.support.operator import (  # noqa: F401  (fixtures)
    batches,
    connections_secret,
    operator,
    start_operator,
    supervisor,
)
from tests.support.worker_fixtures import image_server  # noqa: F401  (fixture)
