"""Atomic writes: every output file goes to a temporary sibling first and is renamed into place.

A reader (or a resumed ``batch``) therefore sees either the old file, the complete new file, or
nothing, never half a file. Output directories are staged the same way: :func:`atomic_dir` yields a
hidden temporary directory next to the target and moves it into place only when the block ends
without an exception. That final move is exclusive: when another process put the target there in
the meantime, this one fails with :class:`OutputError` instead of replacing it (unless told to).

Staging names carry their owner, ``.<name>.tmp-<pid>.<host tag>-<random>``, so a later run can
delete the leftovers of a killed process (:func:`remove_stale_temporaries`) without touching those of
a live one, on this machine or on another node sharing the folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ..errors import OutputError

HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]
_STAGING = re.compile(r"^\..+\.tmp-(\d+)\.([0-9a-f]{8})-[a-z0-9_]+$")
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def staging_prefix(path: Path) -> str:
    """Name prefix of this process's temporaries for ``path``."""
    return f".{path.name}.tmp-{os.getpid()}.{HOST_TAG}-"


def _tmp_sibling(path: Path, is_dir: bool = False) -> Path:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {parent}: {exc.strerror or exc}") from exc
    prefix = staging_prefix(path)
    try:
        if is_dir:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        fd, name = tempfile.mkstemp(prefix=prefix, dir=parent)
        os.close(fd)
        return Path(name)
    except OSError as exc:
        raise OutputError(f"output location {parent} is not writable: {exc.strerror or exc}") from exc


def _libc_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):  # not Linux/glibc ≥ 2.28
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _libc_renameat2()


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` only if ``dst`` does not exist, atomically.

    Linux ``renameat2(RENAME_NOREPLACE)`` where the C library and file system support it. Elsewhere
    ``dst`` is claimed with an exclusive ``mkdir`` and the staged directory renamed onto that empty
    directory (POSIX allows replacing an empty directory): a competing writer using either scheme
    gets :class:`FileExistsError`; readers may briefly see ``dst`` empty.

    Raises:
        FileExistsError: ``dst`` exists.
        OSError: any other failure of the rename.
    """
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(dst))
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(dst))
    os.mkdir(dst)  # FileExistsError when someone else holds the name
    try:
        os.rename(src, dst)
    except BaseException:
        os.rmdir(dst)
        raise


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


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the staged ``tmp`` to ``path``: exclusively, or replacing what is there if ``overwrite``."""
    for _ in range(3):  # with overwrite, another --force writer may slip in between; replace that too
        old = None
        if overwrite and path.exists():
            old = _tmp_sibling(path.with_name(path.name + ".old"), is_dir=True)
            os.replace(path, old)
        try:
            rename_noreplace(tmp, path)
        except FileExistsError:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            if not overwrite:
                raise OutputError(f"output {path} was created by another process while this one was writing it; "
                                  "nothing was replaced (use --force to replace it)") from None
            continue
        except BaseException:
            if old is not None:  # put the previous output back
                with contextlib.suppress(OSError):
                    rename_noreplace(old, path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return
    raise OutputError(f"output {path} keeps being recreated by another process; gave up replacing it")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Stage a whole output directory and move it to ``path`` when the block succeeds.

    If ``path`` exists it is replaced only when ``overwrite`` is true (else :class:`OutputError`);
    the old directory is moved aside first and deleted after the new one is in place. Without
    ``overwrite`` the final move is exclusive, so of two concurrent writers one fails with
    :class:`OutputError`. Stale staging folders of dead processes next to ``path`` are removed first.
    On failure or interruption the staging directory is deleted and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists (use --force to overwrite)")
    if path.exists() and not path.is_dir():
        raise OutputError(f"output {path} exists and is not a directory")
    if path.parent.is_dir():
        remove_stale_temporaries(path.parent)
    tmp = _tmp_sibling(path, is_dir=True)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _publish(tmp, path, overwrite)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write output directory {path}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete the temporaries in ``directory`` whose owner process (on this host) is gone; return how many.

    Entries of live processes, of other hosts, and names not made by this module are left alone.
    """
    count = 0
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return 0
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match is None or match.group(2) != HOST_TAG or _pid_alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # another run cleaned it first
            continue
        except OSError:
            continue
        count += 1
    return count
