"""Atomic writes: every output file goes to a temporary sibling first and is renamed into place.

A reader (or a resumed ``batch``) therefore sees either the old file, the complete new file, or
nothing, never half a file. Output directories are staged the same way: :func:`atomic_dir` yields a
hidden temporary directory next to the target and renames it into place only when the block ends
without an exception.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ..errors import OutputError


def _tmp_sibling(path: Path, is_dir: bool = False) -> Path:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {parent}: {exc.strerror or exc}") from exc
    prefix = f".{path.name}.tmp-"
    try:
        if is_dir:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        fd, name = tempfile.mkstemp(prefix=prefix, dir=parent)
        os.close(fd)
        return Path(name)
    except OSError as exc:
        raise OutputError(f"output location {parent} is not writable: {exc.strerror or exc}") from exc


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and rename the result onto ``path``.

    ``writer`` receives a temporary path in the same directory (same file system, so the rename is
    atomic) and must create the file there. On any exception the temporary file is removed.
    """
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        writer(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``open()`` replacement whose file appears at ``path`` only once the block succeeds."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Stage a whole output directory and move it to ``path`` when the block succeeds.

    If ``path`` exists it is replaced only when ``overwrite`` is true (else :class:`OutputError`);
    the old directory is moved aside first and deleted after the new one is in place.
    On failure or interruption the staging directory is deleted and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists (use --force to overwrite)")
    if path.exists() and not path.is_dir():
        raise OutputError(f"output {path} exists and is not a directory")
    tmp = _tmp_sibling(path, is_dir=True)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if path.exists():
            old = _tmp_sibling(path.with_name(path.name + ".old"), is_dir=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write output directory {path}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete ``.*.tmp-*`` leftovers of a killed process in ``directory``; return how many."""
    count = 0
    for entry in Path(directory).glob(".*.tmp-*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        count += 1
    return count
