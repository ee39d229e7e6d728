"""Loading and saving network weights safely: ``weights_only=True``, atomic writes, errors a user can act on."""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from scripts.utils.atomic import atomic_file
from scripts.utils.errors import InputError

if TYPE_CHECKING:  # torch is imported where weights are read or written, so the file check stays light
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

# keys under which trainers (ignite/MONAI CheckpointSaver, plain dicts) nest a network's state dict
_NESTED_KEYS = ("network", "model", "state_dict", "student", "teacher")


def check_weights_file(path: str | os.PathLike) -> Path:
    """The checks of a weights file that read no weights (made before any work): it exists, is a regular file, is
    not empty and is a zip archive as ``torch.save`` writes; :class:`InputError` naming it otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "weights file not found (train one, or point the config's checkpoint path at it)")
    if not path.is_file():
        raise InputError(path, "is not a regular file (a folder, device or pipe); give a weights file (.pt)")
    if path.stat().st_size == 0:
        raise InputError(path, "the weights file is empty (0 bytes): an interrupted copy or download? copy it again")
    if not zipfile.is_zipfile(path):
        raise InputError(path, "unreadable checkpoint, truncated or corrupt: not the zip archive torch.save writes "
                               "(a cut copy, damaged bytes or another kind of file)")
    return path


def read_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` with ``weights_only=True`` (a pickle that is not plain tensors is refused).

    Accepts a bare state dict or a training checkpoint holding one under ``network``/``model``/``state_dict``.
    Raises :class:`InputError` naming the file when it is missing, not a regular file, empty, truncated, not a torch
    file (random bytes), not weights, or holds NaN / infinite weights (they would write NaN volumes).
    """
    import torch

    path = check_weights_file(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)|Unsupported operand \d+", str(err))
        what = found.group(1) or found.group(0) if found else "objects other than tensors"
        raise InputError(path, f"refused: not a plain weights file, it asks to load {what} (torch.load with "
                               "weights_only=True never runs code from a checkpoint); use weights saved as a state "
                               "dict, from a source you trust") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        lines = str(err).split(". ")[0].splitlines()
        problem = f"unreadable checkpoint, truncated or corrupt ({type(err).__name__}: {lines[0] if lines else ''})"
        raise InputError(path, problem.replace(": )", ")")) from err
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(path, f"does not hold a state dict of tensors (found {type(obj).__name__})")
    bad = [name for name, value in obj.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise InputError(path, f"{len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0]}): a diverged "
                               "or damaged training; use another checkpoint")
    return obj


def load_weights(network: nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load ``path`` into ``network`` strictly; a checkpoint of another architecture or size is an InputError."""
    state = read_state_dict(path, map_location)
    state = {k.removeprefix("module."): v for k, v in state.items()}  # weights saved from a DDP-wrapped network
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            details.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        raise InputError(path, f"weights do not fit {type(network).__name__}: " + "; ".join(details)
                         + " (a checkpoint of another architecture, ablation or channel setting?)")
    network.load_state_dict(state)
    logger.info("loaded %s into %s", path, type(network).__name__)
    return network


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (state dicts are stored without
    the wrapper's ``module.`` prefix), or ``network`` itself."""
    from torch import nn

    return network.module if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else network


def save_weights(network: nn.Module, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``network``'s state dict (DDP prefix stripped) to ``path`` atomically."""
    import torch

    with atomic_file(path, overwrite=overwrite) as tmp:
        torch.save(unwrap(network).state_dict(), tmp)
    return Path(path)
