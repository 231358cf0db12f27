"""peer.storage.in_order: values come out in reservation order, whatever order they finish in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.storage.in_order import InOrder


@given(st.data(), st.integers(min_value=0, max_value=30))
def test_released_in_reservation_order_each_once(data: st.DataObject, count: int) -> None:
    line: InOrder[int] = InOrder()
    slots = [line.reserve() for _ in range(count)]
    order = data.draw(st.permutations(range(count)))
    failed = data.draw(st.sets(st.sampled_from(range(count)) if count else st.nothing()))
    released: list[int] = []
    filled: set[int] = set()
    for index in order:
        out = line.fill(slots[index], None if index in failed else index)
        filled.add(index)
        # Nothing comes out while an earlier slot is still open.
        first_open = min((i for i in range(count) if i not in filled), default=count)
        assert all(value < first_open for value in out)
        released += out
        assert len(line) == count - first_open
    assert released == [i for i in range(count) if i not in failed]


def test_a_later_slot_waits_for_an_earlier_one() -> None:
    line: InOrder[str] = InOrder()
    first, second = line.reserve(), line.reserve()
    assert line.fill(second, "b") == []
    assert line.fill(first, "a") == ["a", "b"]
    with pytest.raises(ValueError):
        line.fill(first, "again")
