"""User-facing errors: each names the input (a file, a folder, an argument) and what is wrong with it."""

from __future__ import annotations

import os
import sys


class InputError(ValueError):
    """An input the bundle cannot use.

    Args:
        source: the file, folder or argument at fault (a path or a name such as ``--t``).
        problem: what is wrong and, where it helps, what to do about it.
    """

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class OutputExistsError(FileExistsError):
    """An output would replace an existing file or folder and ``overwrite`` was not asked for."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        super().__init__(f"{self.path}: already exists; pass --overwrite True to replace it")


def user_error(err: BaseException) -> InputError | OutputExistsError | None:
    """The :class:`InputError` or :class:`OutputExistsError` behind ``err``, following ``__cause__``/``__context__``.

    MONAI's config machinery wraps what a component raises (``RuntimeError: Failed to evaluate ...``); this finds the
    message meant for the user again.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, (InputError, OutputExistsError)):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def report_user_errors() -> None:
    """Make an uncaught user error end the process with one line, ``error: <input>: <problem>``, and exit status 1.

    ``python -m monai.bundle run`` lets exceptions escape with MONAI's config traceback (``RuntimeError: Failed to
    evaluate ConfigExpression ...``) around the message meant for the user; the bundle configs call this in
    ``initialize`` so a clinician sees only that message. Any other exception keeps its full traceback.
    """
    if getattr(sys.excepthook, "reports_user_errors", False):
        return
    previous = sys.excepthook

    def hook(kind, err, traceback):
        known = user_error(err)
        if known is None:
            previous(kind, err, traceback)
        else:
            print(f"error: {known}", file=sys.stderr)

    hook.reports_user_errors = True
    sys.excepthook = hook
