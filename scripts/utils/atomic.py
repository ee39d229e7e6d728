"""Atomic writes: an output appears whole or not at all, and never replaces an existing one unless asked.

A file is written to a temporary name in the same folder and renamed over the target (``os.replace`` is atomic on
POSIX); a folder of outputs is assembled under a temporary name and renamed into place in one step, so a reader (or a
second run aimed at the same folder) never sees a half-written set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scripts.utils.errors import InputError, OutputExistsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(path)


def _temporary(path: Path, make, suffix: str) -> Path:
    """Create the parent folders of ``path`` and a temporary sibling with ``make`` (``mkstemp``/``mkdtemp``); a
    folder that cannot be created or written is an :class:`InputError` naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        made = make(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
        reason = f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir() else err.strerror or err
        raise InputError(path.parent, f"cannot write the output {path.name} here ({reason}); "
                                      "choose another output folder") from err
    if isinstance(made, tuple):  # mkstemp: (fd, name)
        os.close(made[0])
        made = made[1]
    return Path(made)


def interrupted(folder: str | os.PathLike, name_glob: str) -> list[Path]:
    """The temporary files or folders that writes of outputs named ``name_glob`` in ``folder`` left behind when the
    process was killed before the rename (the names :func:`atomic_file` / :func:`atomic_dir` give them)."""
    return sorted(Path(folder).glob(f".{name_glob}.*.tmp*"))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit rename it to ``path``, on an error delete it.

    The temporary name keeps the target's suffixes (``.nii.gz``, ``.pt``) so writers that dispatch on them work.
    """
    path = Path(path)
    _check_target(path, overwrite)
    tmp = _temporary(path, tempfile.mkstemp, ".tmp" + "".join(path.suffixes))
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions a plain open() would
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on a clean exit move it to ``path`` in one rename.

    With ``overwrite`` an existing ``path`` is moved aside first and deleted only after the new folder is in place.
    Two runs aimed at the same ``path`` build separate temporary folders; the second to finish is refused
    (:class:`OutputExistsError`) instead of mixing its files into the first one's.
    """
    path = Path(path)
    _check_target(path, overwrite)
    tmp = _temporary(path, tempfile.mkdtemp, ".tmp")
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        old = None
        if path.exists():
            if not overwrite:
                raise OutputExistsError(path)
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.rename(tmp, path)
        except OSError as err:  # another run created it since the check above
            raise OutputExistsError(path) from err
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
