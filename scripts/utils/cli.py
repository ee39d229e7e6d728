"""The command-line runner shared by ``python -m scripts`` (product verbs) and ``python -m scripts.research``.

Verbs are named ``"module:function"`` and imported on use, so one verb's dependencies never slow down another. A bad
input or an existing output ends with one line on stderr (``error: <input>: <problem>``) and exit status 2. An option
the verb does not take (``--tt 0.5``) is refused before the verb runs: ``fire`` itself would report it only after the
work, when it tries to apply the leftover argument to the verb's result.
"""

from __future__ import annotations

import importlib
import inspect
import logging.config
import sys
from collections.abc import Mapping, Sequence

import fire

from scripts.utils.errors import InputError, user_error
from scripts.utils.paths import ROOT


def _resolve(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def check_options(function, args: Sequence[str], verb: str) -> None:
    """Raise :class:`InputError` for a ``--name`` / ``--name=value`` in ``args`` that ``function`` has no parameter for
    (fire's ``--noname`` for a False flag and ``--help`` are accepted; everything after a bare ``--`` is fire's)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for arg in args:
        if arg == "--":
            break
        if not arg.startswith("--") or arg == "--help":
            continue
        name = arg[2:].split("=", 1)[0].replace("-", "_")
        if name in parameters or (name.startswith("no") and name[2:] in parameters):
            continue
        options = ", ".join(f"--{p}" for p in parameters)
        raise InputError(arg.split("=", 1)[0], f"unknown option of {verb}; it takes {options}")


def run_verbs(verbs: Mapping[str, str], argv: Sequence[str] | None, name: str) -> int:
    """Run the verb named by ``argv[0]`` (or list them all) with ``fire``; return the process exit status."""
    logging.config.fileConfig(ROOT / "configs" / "logging.conf", disable_existing_loggers=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = argv[0] if argv and argv[0] in verbs else None
    try:
        if verb is None:
            fire.Fire({key: _resolve(spec) for key, spec in verbs.items()}, command=argv, name=name)
        else:
            function = _resolve(verbs[verb])
            check_options(function, argv[1:], verb)
            fire.Fire(function, command=argv[1:], name=verb)
    except Exception as err:
        known = user_error(err)
        if known is None:
            raise
        print(f"error: {known}", file=sys.stderr)
        return 2
    return 0
