"""Where the llama.cpp vocab files (models/ggml-vocab-*.gguf) are, fetching the pinned sdist when needed.

Independent of refimpl on purpose: tests of any part (gguf, tokenizers) can use it.

    from sdist import vocab_dir
    path = vocab_dir() / "ggml-vocab-gemma-4.gguf"

Order of preference:
1. ``vendor/llama.cpp/models`` of the repository (a developer checkout with the vendored llama.cpp);
2. a cache: ``$REFIMPL_CACHE`` or ``~/.cache/refimpl``, holding
   ``llama_cpp_python-0.3.36/vendor/llama.cpp/models``.  When the vocab files are missing there, the pinned sdist
   is downloaded with pip (``--no-binary :all:``, so it is the source tarball) and only the
   ``*/vendor/llama.cpp/models/ggml-vocab-*`` members are extracted.  A lock file serialises parallel test
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
_MODELS_IN_SDIST = "vendor/llama.cpp/models"
_VOCAB_PREFIX = "ggml-vocab-"


def cache_root() -> Path:
    env = os.environ.get("REFIMPL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "refimpl"


def _has_vocab_files(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob(_VOCAB_PREFIX + "*.gguf"))


def vocab_dir() -> Path:
    """The directory holding llama.cpp's ``ggml-vocab-*.gguf`` (+ .inp/.out) files of the pinned release."""
    vendored = _REPO_ROOT / "vendor" / "llama.cpp" / "models"
    if _has_vocab_files(vendored):
        return vendored
    root = cache_root()
    models = root / SDIST_NAME / _MODELS_IN_SDIST
    if _has_vocab_files(models) and (models / ".complete").exists():
        return models
    root.mkdir(parents=True, exist_ok=True)
    with _FileLock(root / (SDIST_NAME + ".lock")):
        # Another process may have finished the job while we waited for the lock.
        if not (_has_vocab_files(models) and (models / ".complete").exists()):
            _fetch_and_extract(root, models)
    return models


def _fetch_and_extract(root: Path, models: Path) -> None:
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
    models.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            # "<top>/vendor/llama.cpp/models/ggml-vocab-..." -- exactly one level below models/, regular files only.
            if (len(parts) == 5 and "/".join(parts[1:4]) == _MODELS_IN_SDIST
                    and parts[4].startswith(_VOCAB_PREFIX) and member.isfile()):
                source = tar.extractfile(member)
                target = models / parts[4]
                tmp_target = target.with_name(target.name + ".part")
                with open(tmp_target, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                os.replace(tmp_target, target)
    (models / ".complete").write_text(SDIST_NAME + "\n")


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
    print(vocab_dir())
