"""Tests for data/files.py, the project's one atomic-write helper (train.engine.results re-exports it)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from data.files import atomic_directory, atomic_file, atomic_write_bytes, atomic_write_text


def _listing(folder: Path) -> list[str]:
    """Every name under ``folder``, hidden ones (the temporary entries) included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_writes_create_the_folder_and_replace_the_file(tmp_path):
    target = tmp_path / "new" / "folder" / "out.txt"
    atomic_write_text(target, "first ✓")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _listing(tmp_path) == ["new", "new/folder", "new/folder/out.txt"]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("a bug"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, failure):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(type(failure)) as info:
        with atomic_file(target) as f:
            f.write(b"half of the new")
            raise failure
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["out.json"]
    if isinstance(failure, OSError):  # the error names the file the caller knows, errno kept
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
        assert str(target) in str(info.value)


def test_a_write_that_cannot_start_names_the_target(tmp_path):
    # The temporary name (".<name>.<random>.tmp") of a 250-character name is too long to create.
    target = tmp_path / ("x" * 250)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "x")
    assert info.value.errno == errno.ENAMETOOLONG and info.value.filename == str(target)
    assert _listing(tmp_path) == []


def test_a_bad_argument_leaves_no_temporary_file(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "out.bin", "text, not bytes")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_files_and_folders_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "file.txt", "x")
        with atomic_directory(tmp_path / "folder") as tmp:
            (tmp / "inner.npy").write_bytes(b"y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "file.txt").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "folder" / "inner.npy").stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("existing", ["nothing", "empty folder", "full folder", "file"])
def test_a_directory_replaces_what_was_there(tmp_path, existing):
    target = tmp_path / "entry"
    if existing == "empty folder":
        target.mkdir()
    elif existing == "full folder":
        (target / "sub").mkdir(parents=True)
        (target / "sub" / "old.txt").write_text("old")
    elif existing == "file":
        target.write_text("old")
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".entry.") and not any(tmp.iterdir())
        (tmp / "new.txt").write_text("new")
    assert _listing(tmp_path) == ["entry", "entry/new.txt"]


def test_a_failed_directory_leaves_the_old_one_and_no_temporary_folder(tmp_path):
    target = tmp_path / "entry"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OSError) as info:
        with atomic_directory(target) as tmp:
            (tmp / "half.npy").write_bytes(b"half")
            raise OSError(errno.EIO, "Input/output error")
    assert info.value.filename == str(target)
    assert _listing(tmp_path) == ["entry", "entry/old.txt"]


def test_train_results_writes_through_this_helper_in_the_writing_process_only(tmp_path):
    import train.engine.results as results

    assert results.atomic_files.atomic_write_bytes is atomic_write_bytes
    results.atomic_write_text(tmp_path / "a.json", "{}")
    try:
        results.set_writer(False)
        results.atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        results.set_writer(True)
    assert _listing(tmp_path) == ["a.json"]
