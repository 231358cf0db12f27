"""peer.net.sync: the collector is spared during a pull, and given everything back after it."""

from __future__ import annotations

import gc
import weakref

import pytest

from peer.net.sync import _sparing_the_collector


@pytest.fixture(autouse=True)
def nothing_frozen() -> None:
    """Start from an empty permanent generation: the freeze count is process-wide,
    so these assertions must not depend on what ran before in this process."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_what_a_pull_froze_is_collectable_again_when_it_ends() -> None:
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    with _sparing_the_collector() as spare:
        spare()
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert ref() is not None  # frozen: no collection walks it
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None  # garbage that died while frozen is reclaimed after all


def test_a_failed_pull_unfreezes_too_and_an_idle_one_touches_nothing() -> None:
    with pytest.raises(RuntimeError), _sparing_the_collector() as spare:
        spare()
        raise RuntimeError("the stream broke")
    assert gc.get_freeze_count() == 0
    with _sparing_the_collector():
        pass
    assert gc.get_freeze_count() == 0
