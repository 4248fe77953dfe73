"""Outputs that appear whole or not at all.

Every file refimpl writes (GGUF models, imatrix files, base-logits files, trace dumps, reports) goes through
here: it is written under a temporary name in the target's folder and renamed into place (``os.replace``, atomic
on POSIX and Windows) only when writing succeeded, so an error or Ctrl-C never leaves a half-written file at the
target.  The file gets the mode a plain ``open()`` would give (0666 less the umask), as llama.cpp's tools'
``std::ofstream`` does, not ``mkstemp``'s 0600.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "atomic_path", "atomic_write_bytes"]


def _default_mode(path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


@contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """A temporary path next to ``path`` for a writer that wants a file name (``suffix`` keeps an extension a
    library looks at, e.g. matplotlib's ``.png``); renamed to ``path`` when the block succeeds, removed otherwise."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def atomic_output(path):
    """A binary file object for ``path``; the file appears at ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            yield f


def atomic_write_bytes(path, data) -> None:
    """``data`` (bytes or a buffer) written to ``path`` atomically."""
    with atomic_output(path) as f:
        f.write(data)
