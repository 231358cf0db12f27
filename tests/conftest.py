from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import GrapeProc, require_grape, running_grapes


@pytest.fixture
def real_grapes() -> Iterator[list[GrapeProc]]:
    """Two real grenache-grape processes bootstrapped to each other (-b 127.0.0.1)."""
    with running_grapes([require_grape()], count=2) as grapes:
        yield grapes
