"""Atomic outputs: whole or nothing, never overwriting unless asked, no interleaving of two runs."""

import pytest

from scripts.utils.atomic import atomic_dir, atomic_file
from scripts.utils.errors import OutputExistsError


def test_file_appears_only_on_success(tmp_path):
    target = tmp_path / "a.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_file_refuses_overwrite_unless_asked(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(OutputExistsError, match="x.txt: already exists"):
        with atomic_file(target):
            pass
    with atomic_file(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_dir_whole_or_nothing_and_overwrite(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        with atomic_dir(out) as tmp:
            (tmp / "one.txt").write_text("1")
            raise ValueError("failed half way")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "one.txt").write_text("1")
    with pytest.raises(OutputExistsError):
        with atomic_dir(out):
            pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "two.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["two.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_two_runs_on_one_folder_do_not_interleave(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputExistsError):
        with atomic_dir(out) as first:
            (first / "a.txt").write_text("first")
            with atomic_dir(out) as second:  # starts after the first, finishes before it
                (second / "b.txt").write_text("second")
    # the second run's folder is whole; the first was refused and left nothing behind
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
