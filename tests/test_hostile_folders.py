"""``--data folder:PATH`` trees as users leave them: stray files beside and inside the class folders,
links to images that are gone, and bad trees given to a training command (one line, exit 2)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from cifar10_trees import make_tree, private_default_cache  # noqa: F401 - private_default_cache is an autouse fixture
from conftest import run_cli_in_process
from data.cifar10 import DataError, load_cifar10


def test_stray_files_and_folders_around_the_images_are_ignored(tmp_path):
    clean, messy = tmp_path / "clean", tmp_path / "messy"
    make_tree(clean)
    make_tree(messy)
    cat = messy / "train" / "cat"
    for folder in (messy, messy / "train", cat):
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (messy / "README.txt").write_text("CIFAR-10 as JPEGs")
    (messy / "test" / "labels.csv").write_text("file,label\n")
    (messy / "train" / ".ipynb_checkpoints").mkdir()          # a hidden folder is not an eleventh class
    (cat / "more").mkdir()                                    # a subfolder of a class: not read
    Image.new("RGB", (32, 32)).save(cat / "more" / "extra.png")
    Image.new("RGB", (48, 48)).save(cat / "big.webp")         # not an extension the source reads
    os.symlink(tmp_path / "gone.txt", cat / "broken-link.txt")  # nor is this, broken or not
    want = load_cifar10(f"folder:{clean}", cache_dir=tmp_path / "c1", workers=1)
    got = load_cifar10(f"folder:{messy}", cache_dir=tmp_path / "c2", workers=1)
    assert got.class_names == want.class_names
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_a_link_named_like_an_image_whose_target_is_gone_is_an_error(tmp_path):
    root = tmp_path / "tree"
    make_tree(root)
    link = root / "train" / "dog" / "02.png"
    os.symlink(tmp_path / "elsewhere" / "02.png", link)  # the images it pointed to were moved
    with pytest.raises(DataError) as info:
        load_cifar10(f"folder:{root}", cache_dir=tmp_path / "cache", workers=1)
    assert str(info.value) == f"image {link} is a link to {tmp_path / 'elsewhere' / '02.png'}, which cannot be opened"


def _break(root, case):
    """Breaks a good tree as ``case`` says; returns the path the error must name."""
    cat = root / "test" / "cat"
    if case == "empty class":
        for p in cat.iterdir():
            p.unlink()
        return cat
    if case == "64x64 image":
        Image.new("RGB", (64, 64)).save(cat / "00.png")
        return cat / "00.png"
    if case == "broken link":
        os.symlink(root / "nowhere.jpg", cat / "07.jpg")
        return cat / "07.jpg"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["empty class", "64x64 image", "broken link"])
def test_a_bad_tree_stops_training_with_one_line(tmp_path, case):
    root = tmp_path / "tree"
    make_tree(root, n_train=1)
    named = _break(root, case)
    r = run_cli_in_process("mlp-cifar", "--data", f"folder:{root}", "--epochs", "1", "--batch-size", "2",
                           "--out", tmp_path / "out", "--no-progress")
    assert r.returncode == 2, r.stdout
    line = r.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and str(named) in line, line
    assert not (tmp_path / "out").exists()
