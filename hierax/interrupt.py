"""Ctrl-C that is not lost.

Python turns SIGINT into a ``KeyboardInterrupt`` raised in whatever code runs
next. When that code is a garbage-collection callback (JAX registers one) or a
``__del__`` method, Python prints "Exception ignored" and carries on: the
interrupt is lost, and a command asked to stop samples to the end. The command
line therefore records the request (:func:`stop_on_interrupt`), and the long
loops of the samplers call :func:`check` between their steps, which raises
``KeyboardInterrupt`` again once a stop was requested. Outside
:func:`stop_on_interrupt` (a notebook, a script) nothing changes.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["check", "stop_on_interrupt"]

_requested = False


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested (a cheap flag test)."""
    if _requested:
        raise KeyboardInterrupt


def _request(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


@contextmanager
def stop_on_interrupt() -> Iterator[None]:
    """Record Ctrl-C for :func:`check` while the block runs (main thread only).

    A ``KeyboardInterrupt`` that Python swallows is then not reported as
    "Exception ignored ... Traceback": :func:`check` raises it again.
    """
    global _requested
    _requested = False
    try:
        previous = signal.signal(signal.SIGINT, _request)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    previous_hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        if not (_requested and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous_hook(unraisable)

    sys.unraisablehook = quiet
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        _requested = False
