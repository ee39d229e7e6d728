"""Atomic writes: an output appears whole or not at all, and never replaces an existing one unless asked.

A file is written to a temporary name in the same folder, flushed to disk (``fsync``) and renamed over the target
(``os.replace`` is atomic on POSIX), then the folder's entry is flushed too; a folder of outputs is assembled under a
temporary name and renamed into place in one step, so a reader (or a second run aimed at the same folder) never sees
a half-written set, and a power cut never leaves a renamed but empty file.

A full disk or a file-size limit while writing (``ENOSPC``, ``EDQUOT``, ``EFBIG``) is an
:class:`~scripts.utils.errors.InputError` naming the output, and the partial output is removed.

Replacing a folder (``overwrite``) is refused, whatever is asked, for the filesystem root, the home folder, the
current folder or any folder holding one of them; a caller can also demand that the folder carries its marker file
(the bundle's ``summary.json``, so only a folder the bundle wrote is replaced) and that it holds none of the inputs
(:func:`check_replaceable`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from scripts.utils.args import parse_bool
from scripts.utils.errors import InputError, OutputExistsError

__all__ = ["OUTPUT_MARKER", "atomic_dir", "atomic_file", "check_parent", "check_replaceable", "interrupted"]

# the file the bundle writes last into each output folder of a run; a folder without it was not written by the bundle
OUTPUT_MARKER = "summary.json"

# errors of a write that ran out of room: no space, quota, file-size limit (RLIMIT_FSIZE)
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(path)


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_replaceable(path: str | os.PathLike, marker: str | None = None, keep: Iterable[str | os.PathLike] = ()) -> None:
    """Raise :class:`InputError` naming ``path`` unless the existing folder ``path`` may be replaced.

    Never: the filesystem root, the home folder, the current folder or a folder holding one of them, a file, a folder
    holding any of ``keep`` (e.g. the inputs). With ``marker``: only a folder holding that file (what the bundle writes
    into every output folder).
    """
    target = Path(path).resolve()
    protected = {Path(target.anchor): "the filesystem root", Path.cwd().resolve(): "the current folder",
                 Path.home().resolve(): "your home folder"}
    for folder, name in protected.items():
        if _within(folder, target):
            what = name if folder == target else f"a folder holding {name} ({folder})"
            raise InputError(path, f"refusing to replace {what} (--overwrite replaces only an output folder this "
                                   "bundle wrote); choose a new --output_dir")
    if not target.is_dir():
        raise InputError(path, "is a file, not an output folder; --overwrite replaces only an output folder this "
                               "bundle wrote: choose another --output_dir")
    for item in keep:
        if _within(Path(item).resolve(), target):
            raise InputError(path, f"holds the input {item}; --overwrite would delete it: choose another --output_dir")
    if marker is not None and not (target / marker).is_file():
        raise InputError(path, f"was not written by this bundle (no {marker} in it), so --overwrite does not replace "
                               "it; remove it yourself or choose another --output_dir")


def check_parent(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` (before any work) when ``path`` cannot be created: its nearest existing ancestor is
    a file, or a folder this process may not write into."""
    path = Path(path)
    blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        reason = f"{blocker} is a file, not a folder"
    elif blocker is not None and not os.access(blocker, os.W_OK | os.X_OK):
        reason = f"{blocker}: permission denied"
    else:
        return
    raise InputError(path.parent, f"cannot write the output {path.name} here ({reason}); choose another output folder")


def _temporary(path: Path, make, suffix: str) -> Path:
    """Create the parent folders of ``path`` and a temporary sibling with ``make`` (``mkstemp``/``mkdtemp``); a
    folder that cannot be created or written is an :class:`InputError` naming it."""
    check_parent(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        made = make(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise InputError(path.parent, f"cannot write the output {path.name} here ({err.strerror or err}); "
                                      "choose another output folder") from err
    if isinstance(made, tuple):  # mkstemp: (fd, name)
        os.close(made[0])
        made = made[1]
    return Path(made)


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for parent, _, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(parent, name)):
                _fsync(Path(parent, name))
        _fsync(Path(parent))


def _no_room(err: OSError, path: Path) -> InputError:
    return InputError(path, f"cannot write the output ({err.strerror or err}); free some space, raise the file-size "
                            "limit or choose another --output_dir")


def interrupted(folder: str | os.PathLike, name_glob: str) -> list[Path]:
    """The temporary files or folders that writes of outputs named ``name_glob`` in ``folder`` left behind when the
    process was killed before the rename (the names :func:`atomic_file` / :func:`atomic_dir` give them)."""
    return sorted(Path(folder).glob(f".{name_glob}.*.tmp*"))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit flush it to disk and rename it to ``path``, on an
    error delete it.

    The temporary name keeps the target's suffixes (``.nii.gz``, ``.pt``) so writers that dispatch on them work.
    """
    path = Path(path)
    overwrite = parse_bool(overwrite, "--overwrite")  # "false" from a command line is False
    _check_target(path, overwrite)
    tmp = _temporary(path, tempfile.mkstemp, ".tmp" + "".join(path.suffixes))
    try:
        try:
            yield tmp
            _fsync(tmp)
        except OSError as err:
            if err.errno in _NO_ROOM:
                raise _no_room(err, path) from err
            raise
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions a plain open() would
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False, marker: str | None = None,
               keep: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on a clean exit flush it to disk and move it to ``path`` in one
    rename.

    With ``overwrite`` an existing ``path`` is moved aside first and deleted only after the new folder is in place,
    and only when :func:`check_replaceable` allows it (``marker``, ``keep``), checked before anything is created.
    Two runs aimed at the same ``path`` build separate temporary folders; the second to finish is refused
    (:class:`OutputExistsError`) instead of mixing its files into the first one's.
    """
    path = Path(path)
    keep = list(keep)
    overwrite = parse_bool(overwrite, "--overwrite")  # "false" from a command line is False
    _check_target(path, overwrite)
    if path.exists():
        check_replaceable(path, marker, keep)
    tmp = _temporary(path, tempfile.mkdtemp, ".tmp")
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        try:
            yield tmp
            _fsync_tree(tmp)
        except InputError as err:  # a full disk met by an atomic_file inside: name the output folder, not tmp
            if not err.source.startswith(str(tmp)):
                raise
            raise InputError(path, err.problem) from err
        except OSError as err:
            if err.errno in _NO_ROOM:
                raise _no_room(err, path) from err
            raise
        old = None
        if path.exists():
            if not overwrite:
                raise OutputExistsError(path)
            check_replaceable(path, marker, keep)
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.rename(tmp, path)
        except OSError as err:  # another run created it since the check above
            raise OutputExistsError(path) from err
        _fsync(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
