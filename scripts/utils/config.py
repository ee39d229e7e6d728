"""Run one of this bundle's configs from Python with overrides: the shared path of the fire CLI verbs.

Overrides are data. MONAI's config parser interprets a string that starts with ``$`` (Python code), ``@`` (a reference
to another entry) or ``%`` (a macro), and instantiates a dict with ``_target_``; :func:`run_config` refuses any override
that holds one of these (:func:`check_data`), so a value that reaches it from a command line or a request can never be
run or resolved. The verbs type their arguments first (:mod:`scripts.utils.args`: paths as ``pathlib.Path``, which
the parser passes through untouched); this check is the last line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import PurePath

from scripts.utils.errors import InputError, user_error
from scripts.utils.paths import ROOT

__all__ = ["check_data", "run_config"]

# the prefixes MONAI's ConfigParser interprets in a string value: expression, reference, macro
_INTERPRETED = ("$", "@", "%")


def check_data(value: object, source: str) -> None:
    """Raise :class:`InputError` naming ``source`` unless ``value`` is plain data the config parser leaves alone:
    None, bool, int, float, a path object, a string not starting with ``$ @ %``, a list / tuple of these, or a dict
    of these whose keys are plain names (a key starting with ``_``, such as ``_target_``, or holding the parser's
    ``#`` separator is refused: the parser would instantiate or re-route it)."""
    if value is None or isinstance(value, (bool, int, float, PurePath)):
        return
    if isinstance(value, str):
        if value.startswith(_INTERPRETED):
            raise InputError(source, f"a value may not start with $, @ or % (it would be run as code or resolved as "
                                     f"a config reference); got {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_data(item, source)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("_") or "#" in key or key.startswith(_INTERPRETED):
                raise InputError(source, f"the key {key!r} is not allowed in a value (it would be interpreted by the "
                                         "config parser)")
            check_data(item, f"{source}#{key}")
        return
    raise InputError(source, f"expected a plain value, got {type(value).__name__} {value!r}")


def run_config(config_file: str | os.PathLike, overrides: Mapping[str, object], trusted: Mapping[str, object] = ()):
    """Parse ``config_file`` with ``overrides`` (None values left out, so the config's defaults stand) and return the
    first result of its ``run``.

    Args:
        config_file: the bundle config.
        overrides: config ids -> values from a user; each must pass :func:`check_data` (named ``--<id>``).
        trusted: config ids -> values the calling code wrote itself (e.g. an expression it built from a checked
            value); never pass a user's value here.

    The config machinery wraps errors raised inside expressions in ``RuntimeError``; a user-facing
    :class:`~scripts.utils.errors.InputError` / :class:`~scripts.utils.errors.OutputExistsError` in the chain is raised as
    itself, so the CLI can report it.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        check_data(value, f"--{key}")
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_file)
    parser.update({"bundle_root": str(ROOT), **given, **dict(trusted)})
    try:
        return parser.get_parsed_content("run")[0]
    except Exception as err:
        known = user_error(err)
        if known is None or known is err:
            raise
        raise known from err


def check_run_options(argv: list[str] | None = None) -> None:
    """Refuse, before any work, an option of ``python -m monai.bundle run`` that names no entry of the config.

    MONAI adds an unknown ``--name value`` to the config as a new entry and runs on, so a typo (``--tt 0.5``) is
    silently ignored; the bundle configs call this in ``initialize``. It reads the command line of the running
    process and checks each ``--name`` (or ``--name#sub``) against ``monai.bundle run``'s own options and the top-level
    ids of the ``--config_file`` given; it does nothing in any other process (the bundle's own CLI checks its options
    itself, :func:`scripts.utils.cli.check_options`).
    """
    import inspect
    import sys

    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0].replace("\\", "/").endswith("monai/bundle/__main__.py") or "run" not in argv[1:]:
        return
    args = argv[argv.index("run", 1) + 1:]
    from monai.bundle import ConfigParser
    from monai.bundle.scripts import run

    options = {name: i for i, name in enumerate(args) if name.startswith("--")}
    if "--args_file" in options:  # overrides come from a file too; MONAI reads it, nothing to check here
        return
    files = args[options["--config_file"] + 1] if "--config_file" in options else None
    if not files:
        return
    names = [f.strip(" '\"") for f in files.strip("[]").split(",")] if isinstance(files, str) else list(files)
    known = set(inspect.signature(run).parameters)
    for name in names:
        known |= set(ConfigParser.load_config_file(name))
    for option in options:
        key = option[2:].split("=", 1)[0]
        if key.split("#", 1)[0] not in known:
            raise InputError(option.split("=", 1)[0], f"unknown option: no entry {key.split('#', 1)[0]!r} in "
                                                      f"{', '.join(names)}")
