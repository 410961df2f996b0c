"""Calls of one compiled program spread over the CPU's cores (hierax/threads.py)."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierax import interrupt, threads


def test_results_come_back_in_order_and_equal_sequential_calls(monkeypatch):
    monkeypatch.setattr(threads, "workers", lambda: 3)
    program = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) ** 2))
    items = [np.linspace(i, i + 1.0, 1000) for i in range(10)]
    seen: set[str] = set()

    def call(x: np.ndarray) -> jax.Array:
        seen.add(threading.current_thread().name)
        return program(x)

    spread = threads.map_ordered(call, items)
    for item, result in zip(items, spread, strict=True):
        np.testing.assert_array_equal(np.asarray(result), np.asarray(program(item)))
    assert any(name.startswith("hierax") for name in seen)  # the pool did the work


def test_an_error_in_one_call_is_raised_and_the_rest_cancelled(monkeypatch):
    monkeypatch.setattr(threads, "workers", lambda: 2)

    def call(i: int) -> int:
        if i == 3:
            raise ValueError("item 3 is bad")
        return i

    with pytest.raises(ValueError, match="item 3"):
        threads.map_ordered(call, range(50))
    assert threads.map_ordered(call, range(3)) == [0, 1, 2]  # the pool still works


def test_a_stop_request_stops_the_calls(monkeypatch):
    monkeypatch.setattr(threads, "workers", lambda: 2)
    monkeypatch.setattr(interrupt, "_requested", True)
    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        threads.map_ordered(calls.append, range(20))
    assert calls == []


def test_one_worker_runs_in_the_calling_thread(monkeypatch):
    monkeypatch.setattr(threads, "workers", lambda: 1)
    names = threads.map_ordered(lambda _: threading.current_thread().name, range(3))
    assert names == [threading.current_thread().name] * 3


def test_workers_counts_the_usable_cores():
    assert 1 <= threads.workers() <= threads.MAX_WORKERS
