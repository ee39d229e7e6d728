"""The command-line runner shared by ``python -m scripts`` (product verbs) and ``python -m scripts.research``.

Verbs are named ``"module:function"`` and imported on use, so one verb's dependencies never slow down another. A bad
input or an existing output ends with one line on stderr (``error: <input>: <problem>``) and exit status 2.
"""

from __future__ import annotations

import importlib
import logging.config
import sys
from collections.abc import Mapping, Sequence

import fire

from scripts.utils.errors import user_error
from scripts.utils.paths import ROOT


def _resolve(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def run_verbs(verbs: Mapping[str, str], argv: Sequence[str] | None, name: str) -> int:
    """Run the verb named by ``argv[0]`` (or list them all) with ``fire``; return the process exit status."""
    logging.config.fileConfig(ROOT / "configs" / "logging.conf", disable_existing_loggers=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = argv[0] if argv and argv[0] in verbs else None
    try:
        if verb is None:
            fire.Fire({key: _resolve(spec) for key, spec in verbs.items()}, command=argv, name=name)
        else:
            fire.Fire(_resolve(verbs[verb]), command=argv[1:], name=verb)
    except Exception as err:
        known = user_error(err)
        if known is None:
            raise
        print(f"error: {known}", file=sys.stderr)
        return 2
    return 0
