"""User-facing errors: each names the input (a file, a folder, an argument) and what is wrong with it."""

from __future__ import annotations

import os


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
