"""Atomic outputs: whole or nothing, never overwriting unless asked, no interleaving of two runs."""

import errno
import os
from pathlib import Path

import pytest
import torch

from scripts.utils.atomic import OUTPUT_MARKER, atomic_dir, atomic_file, check_replaceable
from scripts.utils.errors import InputError, OutputExistsError


def test_file_appears_only_on_success(tmp_path):
    target = tmp_path / "a.nii.gz"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
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
    with pytest.raises(OutputExistsError, match="x.txt: already exists"), atomic_file(target):
        pass
    with pytest.raises(OutputExistsError), atomic_file(target, overwrite="false"):  # a command line's word
        pass
    with pytest.raises(InputError, match="--overwrite: expected True or False, got 'maybe'"), atomic_file(
            target, overwrite="maybe"):
        pass
    assert target.read_text() == "old"
    with atomic_file(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_dir_whole_or_nothing_and_overwrite(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError), atomic_dir(out) as tmp:
        (tmp / "one.txt").write_text("1")
        raise ValueError("failed half way")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "one.txt").write_text("1")
    with pytest.raises(OutputExistsError), atomic_dir(out):
        pass
    with pytest.raises(OutputExistsError), atomic_dir(out, overwrite="no"):  # "no" is not a non-empty, true string
        pass
    assert sorted(p.name for p in out.iterdir()) == ["one.txt"]
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "two.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["two.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_two_runs_on_one_folder_do_not_interleave(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputExistsError), atomic_dir(out) as first:
        (first / "a.txt").write_text("first")
        with atomic_dir(out) as second:  # starts after the first, finishes before it
            (second / "b.txt").write_text("second")
    # the second run's folder is whole; the first was refused and left nothing behind
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_files_are_flushed_before_the_rename(tmp_path, monkeypatch):
    flushed = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: flushed.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    with atomic_dir(tmp_path / "out") as folder:
        with atomic_file(folder / "a.txt") as tmp:
            tmp.write_text("a")
        (folder / "b.txt").write_text("b")  # written directly into the work folder: flushed with it
    names = [Path(p).name for p in flushed]
    assert any(n.startswith(".a.txt.") for n in names)  # the temporary file, before its rename
    assert "b.txt" in names  # the work folder's files, before the folder's rename
    assert names[-1] == tmp_path.name  # and the parent's entry, after it


@pytest.mark.parametrize("code, text", [(errno.ENOSPC, "No space left on device"), (errno.EFBIG, "File too large"),
                                        (errno.EDQUOT, "Disk quota exceeded")])
def test_a_full_disk_is_one_error_naming_the_output(tmp_path, code, text):
    with pytest.raises(InputError, match=rf"out: cannot write the output \({text}\)"), \
            atomic_dir(tmp_path / "out") as folder, atomic_file(folder / "a.nii.gz") as tmp:
        tmp.write_text("partial")
        raise OSError(code, os.strerror(code))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=rf"single.txt: cannot write the output \({text}\)"), \
            atomic_file(tmp_path / "single.txt"):
        raise OSError(code, os.strerror(code))
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_not_disguised(tmp_path):
    with pytest.raises(PermissionError), atomic_file(tmp_path / "x.txt"):
        raise PermissionError(errno.EACCES, "denied")


def test_replace_only_what_may_be_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "..")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / OUTPUT_MARKER).write_text("{}")
    check_replaceable(mine, OUTPUT_MARKER)
    with pytest.raises(InputError, match="holds the input"):
        check_replaceable(mine, OUTPUT_MARKER, keep=[mine / "sub" / "scan.nii.gz"])
    (tmp_path / "theirs").mkdir()
    with pytest.raises(InputError, match=r"was not written by this bundle \(no summary.json"):
        check_replaceable(tmp_path / "theirs", OUTPUT_MARKER)
    check_replaceable(tmp_path / "theirs")  # without a marker demanded (phantom folders)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_replaceable(tmp_path / "file")
    for path, what in (("/", "the filesystem root"), (".", "the current folder"), ("..", "a folder holding")):
        with pytest.raises(InputError, match=f"refusing to replace {what}"):
            check_replaceable(path)
    monkeypatch.setenv("HOME", str(mine))
    with pytest.raises(InputError, match="refusing to replace your home folder"):
        check_replaceable(mine, OUTPUT_MARKER)
    with pytest.raises(InputError, match="refusing to replace the current folder"), atomic_dir(".", overwrite=True):
        pass


def test_interrupted_best_and_export_saves_are_removed_when_training_starts(tmp_path):
    """A kill during a best-weights save or the final export leaves a hidden temporary file; the next run's handlers
    delete it when attached (before any work), and leave other files alone."""
    from ignite.engine import Engine

    from scripts.training.handlers import BestWeights, ExportWeights

    network = torch.nn.Linear(2, 2)
    stale = [tmp_path / ".teacher_best.pt.k2j4h.tmp.pt", tmp_path / ".teacher.pt.x8s7a.tmp.pt"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (tmp_path / "teacher_best.pt").write_bytes(b"the best so far")
    engine = Engine(lambda engine, batch: None)
    BestWeights(network, str(tmp_path / "teacher_best.pt")).attach(engine)
    ExportWeights(network, str(tmp_path / "teacher.pt")).attach(engine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher_best.pt"]
