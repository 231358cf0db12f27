from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support import require_grape, running_grapes


@pytest.fixture(params=["localgrape", pytest.param("grape", marks=pytest.mark.interop)])
def grape_urls(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Two grapes bootstrapped to each other: localgrapes (hermetic) or real grapes."""
    cmd = [require_grape()] if request.param == "grape" else [sys.executable, "-m", "localgrape"]
    with running_grapes(cmd, count=2) as grapes:
        yield [g.url for g in grapes]
