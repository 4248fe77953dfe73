"""Where the pinned llama.cpp's files are (the vocab files models/ggml-vocab-*.gguf and the few C sources that
tables are extracted from), fetching the pinned sdist when needed.

Independent of refimpl on purpose: tests of any part (gguf, tokenizers, i-quant tables) can use it.

    from sdist import vocab_dir, llama_cpp_dir
    path = vocab_dir() / "ggml-vocab-gemma-4.gguf"
    common_h = llama_cpp_dir() / "ggml" / "src" / "ggml-common.h"

Order of preference:
1. ``vendor/llama.cpp/models`` of the repository (a developer checkout with the vendored llama.cpp);
2. a cache: ``$REFIMPL_CACHE`` or ``~/.cache/refimpl``, holding
   ``llama_cpp_python-0.3.36/vendor/llama.cpp``.  When the files are missing there, the pinned sdist
   is downloaded with pip (``--no-binary :all:``, so it is the source tarball) and only the
   ``*/vendor/llama.cpp/models/ggml-vocab-*`` members and the files in ``SOURCES`` are extracted.  A lock file serialises parallel test
   processes (pytest-xdist, several CI jobs on one cache).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_NAME = "llama_cpp_python-0.3.36"
SDIST_REQUIREMENT = "llama-cpp-python==0.3.36"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_LLAMA_IN_SDIST = "vendor/llama.cpp"
_VOCAB_PREFIX = "ggml-vocab-"
# C sources whose tables refimpl extracts (tools/extract_iq_tables.py, tools/extract_unicode_tables.py).
SOURCES = ("ggml/src/ggml-common.h", "ggml/src/ggml-quants.c", "src/unicode-data.cpp")
# Written last; its content names what was extracted, so a cache made by an older list is refreshed.
_MARKER = ".complete"
_MARKER_TEXT = SDIST_NAME + "\n" + "\n".join(("models/" + _VOCAB_PREFIX + "*",) + SOURCES) + "\n"


def cache_root() -> Path:
    env = os.environ.get("REFIMPL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "refimpl"


def _has_vocab_files(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob(_VOCAB_PREFIX + "*.gguf"))


def vocab_dir() -> Path:
    """The directory holding llama.cpp's ``ggml-vocab-*.gguf`` (+ .inp/.out) files of the pinned release."""
    return llama_cpp_dir() / "models"


def llama_cpp_dir() -> Path:
    """A llama.cpp root of the pinned release holding at least ``models/ggml-vocab-*`` and ``SOURCES``."""
    vendored = _REPO_ROOT / "vendor" / "llama.cpp"
    if _complete(vendored):
        return vendored
    root = cache_root()
    llama = root / SDIST_NAME / _LLAMA_IN_SDIST
    if _complete(llama) and _marker_current(llama):
        return llama
    root.mkdir(parents=True, exist_ok=True)
    with _FileLock(root / (SDIST_NAME + ".lock")):
        # Another process may have finished the job while we waited for the lock.
        if not (_complete(llama) and _marker_current(llama)):
            _fetch_and_extract(root, llama)
    return llama


def _complete(llama: Path) -> bool:
    return _has_vocab_files(llama / "models") and all((llama / rel).is_file() for rel in SOURCES)


def _marker_current(llama: Path) -> bool:
    marker = llama / _MARKER
    return marker.is_file() and marker.read_text() == _MARKER_TEXT


def _fetch_and_extract(root: Path, llama: Path) -> None:
    tarball = root / (SDIST_NAME + ".tar.gz")
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 SDIST_REQUIREMENT, "-d", tmp],
                check=True,
            )
            downloaded = list(Path(tmp).glob("*.tar.gz"))
            if len(downloaded) != 1:
                raise RuntimeError(f"pip download of {SDIST_REQUIREMENT} produced {downloaded}, expected one sdist")
            os.replace(downloaded[0], tarball)
    llama.mkdir(parents=True, exist_ok=True)
    prefix = _LLAMA_IN_SDIST + "/"
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            top, _, rest = member.name.partition("/")
            if not rest.startswith(prefix) or not member.isfile():
                continue
            rel = rest[len(prefix):]
            # models/ggml-vocab-... exactly one level below models/, and the listed C sources; nothing else.
            wanted = rel in SOURCES or (rel.startswith("models/" + _VOCAB_PREFIX) and rel.count("/") == 1)
            if not wanted:
                continue
            source = tar.extractfile(member)
            target = llama / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp_target = target.with_name(target.name + ".part")
            with open(tmp_target, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp_target, target)
    missing = [rel for rel in SOURCES if not (llama / rel).is_file()]
    if missing or not _has_vocab_files(llama / "models"):
        raise RuntimeError(f"{tarball} lacks {missing or 'models/ggml-vocab-*'}: not the pinned sdist?")
    (llama / _MARKER).write_text(_MARKER_TEXT)


class _FileLock:
    """An exclusive advisory lock on a file (fcntl on POSIX, msvcrt on Windows)."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def __enter__(self):
        self._fh = open(self.path, "a+b")
        if os.name == "nt":  # pragma: no cover
            import msvcrt
            self._fh.seek(0)
            while True:
                try:
                    msvcrt.locking(self._fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
        else:
            import fcntl
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if os.name != "nt":
            import fcntl
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        return False


if __name__ == "__main__":
    print(llama_cpp_dir())
