from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support import require_grape, running_grapes


@pytest.fixture(params=["localgrape", pytest.param("grape", marks=pytest.mark.interop)])
def grape_urls(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Two grapes bootstrapped to each other: localgrape (hermetic) or the real one."""
    if request.param == "grape":
        cmd = [require_grape()]
        count = 2
    else:
        cmd = [sys.executable, "-m", "localgrape"]
        count = 1  # localgrapes do not form a DHT with each other yet
    with running_grapes(cmd, count=count) as grapes:
        yield [g.url for g in grapes]
