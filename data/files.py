"""Atomic file and folder writes (and quiet removal of leftovers): the project's one helper.

A temporary entry beside the target is renamed over it (never across file systems), so a killed
process leaves the old or the new version; it gets the umask's ordinary permissions. No fsync:
files are rewritten every evaluation and only a power cut could lose the newest. Lives in ``data``,
the lowest layer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_directory", "atomic_file", "atomic_write_bytes", "atomic_write_text",
           "remove_quietly"]

_TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (creating its folder); see the module docstring."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` as UTF-8 to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` if the block exits cleanly; otherwise ``path`` is untouched."""
    with _staged(Path(path), _create_file) as tmp, open(tmp, "wb") as f:
        yield f


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """An empty folder to fill that replaces ``path`` if the block exits cleanly; a reader sees the
    old entry, the new one or (for an instant) none, never a mixture."""
    with _staged(Path(path), _create_directory) as tmp:
        yield tmp


def remove_quietly(path: Path) -> None:
    """Deletes the file or folder tree ``path`` if it can; for leftovers, so errors are ignored."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _create_file(tmp: Path) -> None:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))


def _create_directory(tmp: Path) -> None:
    os.mkdir(tmp, 0o777)


def _unused(tmp: Path) -> None:
    if os.path.lexists(tmp):
        raise FileExistsError(errno.EEXIST, "exists", str(tmp))


@contextlib.contextmanager
def _staged(path: Path, create: Callable[[Path], None]) -> Iterator[Path]:
    """A new temporary entry beside ``path``, moved over it on a clean exit, else removed."""
    path.parent.mkdir(parents=True, exist_ok=True)  # its OSError names the folder, rightly
    tmp = _create_beside(path, create)
    try:
        yield tmp
        _move_over(tmp, path)
    except OSError as e:
        remove_quietly(tmp)
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e  # name the file the user knows
    except BaseException:
        remove_quietly(tmp)
        raise


def _create_beside(path: Path, create: Callable[[Path], None]) -> Path:
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        try:
            create(tmp)
        except FileExistsError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from e
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name beside it", str(path))


def _move_over(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)  # a file over a file, or a folder over nothing or an empty folder
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
            raise
        aside = _create_beside(path, _unused)  # a free name; the rename below creates it
        os.rename(path, aside)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(aside, path)
            raise
        remove_quietly(aside)
