"""The heap is frozen during a fit and given back afterwards."""

from __future__ import annotations

import gc
import weakref

import pytest

from hierax.core.heap import frozen_heap


@pytest.fixture(autouse=True)
def _unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_heap_is_frozen_inside_and_given_back_after():
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        frozen = gc.get_freeze_count()
        with frozen_heap():  # nested: still the outer freeze
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0


def test_unfrozen_after_an_error():
    with pytest.raises(ValueError), frozen_heap():
        raise ValueError("boom")
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_the_fit_are_collected():
    class Node:
        pass

    with frozen_heap():
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        gc.collect()
        assert ref() is None


def test_cycles_made_before_are_collected_after():
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    with frozen_heap():
        gc.collect()
        assert ref() is not None  # frozen: left alone during the fit
    gc.collect()
    assert ref() is None


def test_a_freeze_made_by_the_caller_is_left_alone():
    gc.freeze()
    count = gc.get_freeze_count()
    with frozen_heap():
        pass
    assert gc.get_freeze_count() == count


def test_usable_as_a_decorator():
    @frozen_heap()
    def work() -> int:
        return gc.get_freeze_count()

    assert work() > 0
    assert gc.get_freeze_count() == 0
