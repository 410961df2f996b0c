"""Ctrl-C that is not lost.

Python turns SIGINT into a ``KeyboardInterrupt`` raised in whatever code runs
next. When that code is a garbage-collection callback (JAX registers one), a
weak-reference callback (h5py's, while a NetCDF file is written) or a
``__del__`` method, Python prints "Exception ignored" and carries on: the
interrupt is lost, and a command asked to stop samples to the end, a script
asked to stop during ``fit.save`` goes on. Code that must not lose a Ctrl-C
therefore runs inside :func:`stop_on_interrupt`, which records the request;
the long loops of the samplers call :func:`check` between their steps, which
raises ``KeyboardInterrupt`` again once a stop was requested, and leaving the
block raises it too if nobody did. Outside :func:`stop_on_interrupt` nothing
changes.
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
    """Raise ``KeyboardInterrupt`` if a stop was requested (a cheap flag test).

    The request is delivered once: after raising, the flag is cleared.
    """
    global _requested
    if _requested:
        _requested = False
        raise KeyboardInterrupt


def _request(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


@contextmanager
def stop_on_interrupt() -> Iterator[None]:
    """Record Ctrl-C for :func:`check` while the block runs (main thread only).

    A ``KeyboardInterrupt`` that Python swallows is then not reported as
    "Exception ignored ... Traceback": :func:`check` raises it again, and so
    does leaving the block normally while a request is pending. Blocks nest:
    an inner block leaves the request to the outermost one. Where SIGINT is
    ignored (a background job) or this is not the main thread, nothing changes.
    """
    global _requested
    current = signal.getsignal(signal.SIGINT)
    if current is _request or current is signal.SIG_IGN:
        yield  # nested (the outer block owns the request), or Ctrl-C is ignored here
        return
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
        pending = _requested
        _requested = False
    if pending:  # the block ended normally, but a Ctrl-C was swallowed inside it
        raise KeyboardInterrupt
