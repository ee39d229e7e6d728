"""Run one of this bundle's configs from Python with overrides: the shared path of the fire CLI verbs."""

from __future__ import annotations

import os
from collections.abc import Mapping

from scripts.utils.errors import user_error
from scripts.utils.paths import ROOT


def run_config(config_file: str | os.PathLike, overrides: Mapping[str, object]):
    """Parse ``config_file`` with ``overrides`` (None values left out, so the config's defaults stand) and return the
    first result of its ``run``.

    The config machinery wraps errors raised inside expressions in ``RuntimeError``; a user-facing
    :class:`~scripts.utils.errors.InputError` / :class:`~scripts.utils.errors.OutputExistsError` in the chain is raised as
    itself, so the CLI can report it.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_file)
    parser.update({"bundle_root": str(ROOT), **{k: v for k, v in overrides.items() if v is not None}})
    try:
        return parser.get_parsed_content("run")[0]
    except Exception as err:
        known = user_error(err)
        if known is None or known is err:
            raise
        raise known from err
