from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support import GrapeProc, require_grape, running_grapes

# Hypothesis times example generation and, by default, each example: on a loaded
# machine (CI, or a laptop building something) both fail tests whose properties
# hold. Time bounds belong in bench/, so the whole suite runs without them; a test's
# own @settings inherit this (a suppress_health_check list it passes replaces it).
settings.register_profile("suite", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.fixture
def real_grapes() -> Iterator[list[GrapeProc]]:
    """Two real grenache-grape processes bootstrapped to each other (-b 127.0.0.1)."""
    with running_grapes([require_grape()], count=2) as grapes:
        yield grapes
