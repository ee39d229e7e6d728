"""Ignite handlers for crash-safe training: atomic checkpoints of the whole training state, and resume.

MONAI's ``CheckpointSaver`` writes non-atomically (ignite ``DiskSaver(atomic=False)``), so a kill during a save can
leave a broken file; these write to a temporary file and rename it (ignite ``DiskSaver(atomic=True)``), so a kill at any
moment leaves the previous or the new checkpoint, never a broken one.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from scripts.checkpoint import save_weights
from scripts.errors import InputError

logger = logging.getLogger(__name__)

_PREFIX = "last"
_PATTERN = re.compile(rf"{_PREFIX}_checkpoint_(\d+)\.pt$")


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest ``last_checkpoint_<iteration>.pt`` in ``directory``, or ``None``."""
    found = []
    for path in Path(directory).glob(f"{_PREFIX}_checkpoint_*.pt"):
        match = _PATTERN.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


class TrainingCheckpoint:
    """Save ``save_dict`` (network, optimizer, ...) and the trainer's own state atomically every ``interval`` epochs,
    keeping the last one.

    Args:
        save_dir: folder of ``last_checkpoint_<iteration>.pt``.
        save_dict: objects with ``state_dict``; the engine it is attached to is added as ``trainer`` (so configs
            need no circular reference from the trainer's handlers back to the trainer).
        interval: epochs between saves.
    """

    def __init__(self, save_dir: str, save_dict: dict, interval: int = 1):
        self.save_dir = save_dir
        self.save_dict = save_dict
        self.interval = interval

    def attach(self, engine: Engine) -> None:
        checkpoint = Checkpoint(
            {**self.save_dict, "trainer": engine},
            DiskSaver(self.save_dir, require_empty=False, atomic=True),
            filename_prefix=_PREFIX,
            n_saved=1,
            global_step_transform=lambda eng, _: eng.state.iteration,
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), checkpoint)


class ResumeFromCheckpoint:
    """Before the first epoch, load the newest checkpoint of ``save_dir`` into ``load_dict`` and the engine (saved as
    ``trainer`` by :class:`TrainingCheckpoint`) when ``enabled``.

    With no checkpoint there yet, training starts from scratch (logged), so ``resume=True`` is safe to set always.
    """

    def __init__(self, save_dir: str, load_dict: dict, enabled: bool = True):
        self.save_dir = save_dir
        self.load_dict = load_dict
        self.enabled = enabled

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        path = latest_checkpoint(self.save_dir)
        if path is None:
            logger.info("resume: no checkpoint in %s yet, starting from scratch", self.save_dir)
            return
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure to read is reported with the file named
            raise InputError(path, f"cannot resume from this checkpoint ({type(err).__name__}: {err})") from err
        max_epochs = engine.state.max_epochs  # the config's budget wins over the checkpoint's (training may be extended)
        Checkpoint.load_objects({**self.load_dict, "trainer": engine}, state)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise InputError(path, f"was saved at epoch {engine.state.epoch}, beyond num_epochs={max_epochs}")
        engine.state.max_epochs = max_epochs
        logger.info("resumed from %s at epoch %d, iteration %d", path, engine.state.epoch, engine.state.iteration)


class ExportWeights:
    """At the end of training, write the network's bare state dict (what ``models/*.pt`` ship) to ``path``."""

    def __init__(self, network: torch.nn.Module, path: str):
        self.network = network
        self.path = path

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        save_weights(self.network, self.path, overwrite=True)
        logger.info("wrote %s", self.path)
