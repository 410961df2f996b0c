"""Files: atomic writes (a crash or Ctrl-C never leaves a partial file) and the checks
that every file hierax reads exists, is a file and can be read, with messages that
name it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hierax.core import interrupt

__all__ = ["atomic_write", "check_output_folder", "unreadable_reason"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write ``path`` through a temporary file beside it, renamed into place when complete.

    ``write`` receives the temporary file's path. The result gets the usual file
    mode (mkstemp's 0600 is for the temporary only). A Ctrl-C during the write
    raises ``KeyboardInterrupt`` (also one that a library's callback swallowed,
    see :mod:`hierax.interrupt`), removes the temporary and leaves ``path`` as
    it was.

    Raises
    ------
    OSError
        The folder of ``path`` cannot be created or written; the message names it.
    """
    path = Path(path)
    label = f"the folder of {str(path)!r}"
    _make_folder(path.parent, label)
    temporary = ""
    with interrupt.stop_on_interrupt():
        try:
            try:
                handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            except OSError as error:
                raise _folder_error(error, path.parent, label) from None
            os.close(handle)
            write(Path(temporary))
            interrupt.check()  # a Ctrl-C swallowed during the write: no rename
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        finally:
            if temporary and os.path.exists(temporary):
                os.remove(temporary)
    return path


def check_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (with its parents) if needed and check that files can be written there.

    Called before a long computation whose results go there, so that a folder
    that cannot be used fails at once rather than after the work is done.

    Raises
    ------
    OSError
        Naming the folder and why (a file of that name exists, no permission,
        a read-only file system ...).
    """
    folder = Path(folder)
    label = f"the output folder {str(folder)!r}"
    _make_folder(folder, label)
    try:
        handle, probe = tempfile.mkstemp(prefix=".hierax-write-test.", dir=folder)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise _folder_error(error, folder, label) from None
    return folder


def _make_folder(folder: Path, label: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot write into {label}: it is a file, not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _folder_error(error, folder, label) from None


def _folder_error(error: OSError, folder: Path, label: str) -> OSError:
    """The same kind of OSError, its message naming the folder (and the path at fault)."""
    reason = error.strerror or str(error)
    if error.filename and Path(str(error.filename)) != folder:
        reason += f": {error.filename}"
    return type(error)(f"cannot create or write into {label} ({reason}).")


def unreadable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a file ("does not exist", ...), or None when it can."""
    path = Path(path)
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return "is a folder, not a file"
    if not path.is_file():
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "cannot be read (no permission)"
    return None
