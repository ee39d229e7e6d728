"""Ignite handlers for crash-safe training: atomic checkpoints of the whole training state, resume, and per-epoch
seeding of the augmentation so that a resumed run repeats the uninterrupted one exactly.

MONAI's ``CheckpointSaver`` writes non-atomically (ignite ``DiskSaver(atomic=False)``), so a kill during a save can
leave a broken file; :class:`TrainingCheckpoint` writes to a temporary file, renames it, and only then deletes the
previous checkpoint, so a kill at any moment leaves the previous or the new checkpoint, never a broken one or none.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.data.utils import set_rnd

from scripts.utils.atomic import atomic_file, interrupted
from scripts.utils.checkpoint import save_weights, unwrap
from scripts.utils.errors import InputError

logger = logging.getLogger(__name__)

_PREFIX = "last"
_PATTERN = re.compile(rf"{_PREFIX}_checkpoint_(\d+)\.pt$")


def _checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every ``last_checkpoint_<iteration>.pt`` in ``directory``, oldest first."""
    found = ((_PATTERN.fullmatch(p.name), p) for p in Path(directory).glob(f"{_PREFIX}_checkpoint_*.pt"))
    return sorted((int(match.group(1)), path) for match, path in found if match)


def remove_interrupted(path: str | os.PathLike) -> None:
    """Delete what an atomic write of ``path`` killed before its rename left behind (its hidden temporary file)."""
    path = Path(path)
    for stale in interrupted(path.parent, path.name):
        logger.warning("deleting %s, the remains of a write of %s that was interrupted", stale, path.name)
        stale.unlink(missing_ok=True)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest ``last_checkpoint_<iteration>.pt`` in ``directory``, or ``None``."""
    found = _checkpoints(directory)
    return found[-1][1] if found else None


class TrainingCheckpoint:
    """Save ``save_dict`` (network, optimizer, ...) and the trainer's own state every ``interval`` epochs as
    ``last_checkpoint_<iteration>.pt``, keeping the last one.

    The new file is written under a temporary name and renamed (:func:`scripts.utils.atomic.atomic_file`), and only then
    is the previous checkpoint deleted; ignite's ``Checkpoint(n_saved=1)`` deletes the previous one *before* writing,
    so a kill during its save leaves no checkpoint at all. The format is ignite's (``{name: state_dict}``, DDP
    wrappers removed), read back by ``Checkpoint.load_objects``.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects with ``state_dict``; the engine it is attached to is added as ``trainer`` (so configs
            need no circular reference from the trainer's handlers back to the trainer).
        interval: epochs between saves.
    """

    def __init__(self, save_dir: str, save_dict: dict, interval: int = 1):
        self.save_dir = Path(save_dir)
        self.save_dict = save_dict
        self.interval = interval

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        objects = {**self.save_dict, "trainer": engine}
        state = {name: unwrap(obj).state_dict() for name, obj in objects.items()}
        path = self.save_dir / f"{_PREFIX}_checkpoint_{engine.state.iteration}.pt"
        with atomic_file(path, overwrite=True) as tmp:
            torch.save(state, tmp)
        for _, old in _checkpoints(self.save_dir):
            if old != path:
                old.unlink()
        logger.info("saved %s", path)


class EpochSeed:
    """At the start of every epoch, seed the random transforms of ``dataset`` with ``seed + epoch``.

    MONAI's ``DataLoader`` seeds them once, when it is built, so a run resumed at epoch k would replay the flips and
    swaps of epoch 1; seeded per epoch, the resumed run draws what the uninterrupted one drew, and in deterministic
    mode reaches the same weights (``tests/test_crash.py``).
    """

    def __init__(self, dataset, seed: int = 0):
        self.dataset = dataset
        self.seed = int(seed)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        set_rnd(self.dataset, self.seed + engine.state.epoch)


class GradientClip:
    """Clip the gradients' global norm to ``max_norm`` after every backward pass, before the optimiser steps
    (MONAI's ``IterationEvents.BACKWARD_COMPLETED``); under AMP the gradients are unscaled first.

    A log-loss (:class:`~scripts.training.losses.NegativePSNR`) has gradients ``1 / MSE`` times the MSE's: one
    nearly perfect item can throw the weights far (a neighbour refinement at lr 1e-3 fell from +0.01 to -20 dB in
    250 iterations and took 250 more to recover).
    """

    def __init__(self, max_norm: float = 5.0):
        self.max_norm = float(max_norm)

    def attach(self, engine: Engine) -> None:
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if getattr(engine, "scaler", None) is not None and engine.amp:
            engine.scaler.unscale_(engine.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm)


class OutputLock:
    """Hold an exclusive lock on ``save_dir`` while training, so that a second run aimed at the same folder is refused
    (:class:`InputError`) instead of interleaving its checkpoints with this one's.

    The lock is ``flock`` on ``save_dir/.lock``, taken when the handler is attached (before any checkpoint is read or
    written) and released when training ends; the kernel drops it when the process dies, so a killed run never
    leaves a stale lock behind.
    """

    def __init__(self, save_dir: str):
        self.path = Path(save_dir) / ".lock"
        self._file = None

    def attach(self, engine: Engine) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise InputError(self.path.parent, f"is in use by another training run (pid {owner}); wait for it to "
                                               "finish or choose another --output_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        engine.add_event_handler(Events.COMPLETED, self.release)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._release_and_raise)

    def release(self, engine: Engine | None = None) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def _release_and_raise(self, engine: Engine, err: BaseException) -> None:
        # ignite re-raises a run's exception only when no EXCEPTION_RAISED handler exists; with one, the handler
        # must re-raise it itself
        self.release()
        raise err


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
        for stale in interrupted(self.save_dir, f"{_PREFIX}_checkpoint_*.pt"):  # a save killed half-way
            logger.warning("resume: deleting %s, the remains of a checkpoint save that was interrupted", stale)
            stale.unlink()
        path = latest_checkpoint(self.save_dir)
        if path is None:
            logger.info("resume: no checkpoint in %s yet, starting from scratch", self.save_dir)
            return
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(path, f"cannot resume from this checkpoint ({type(err).__name__}: {err})") from err
        to_load = {**self.load_dict, "trainer": engine}
        absent = [name for name in to_load if name not in state]
        if {"network", "trainer"} & set(absent):
            raise InputError(path, f"is not a training checkpoint of this bundle (no {absent} in it)")
        for name in absent:  # e.g. "best", which checkpoints of older versions lack
            logger.warning("resume: %s holds no %r; it starts afresh", path, name)
            del to_load[name]
        max_epochs = engine.state.max_epochs  # the config's budget wins over the checkpoint's (training may grow)
        try:
            Checkpoint.load_objects(to_load, state)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:  # e.g. another channels / ablation setting
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(path, f"does not fit this training's network or optimizer (another channels, ablation "
                                   f"or optimizer setting?): {first[:300]}; resume with the settings it was saved "
                                   "with, or use another --output_dir") from err
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise InputError(path, f"was saved at epoch {engine.state.epoch}, beyond num_epochs={max_epochs}")
        engine.state.max_epochs = max_epochs
        logger.info("resumed from %s at epoch %d, iteration %d", path, engine.state.epoch, engine.state.iteration)


class BestWeights:
    """After each validation, write the network's weights to ``path`` when ``metric`` beats the best so far (higher is
    better).

    Written atomically and replaced only by a better one (the temporary file of a save killed in an earlier run is
    deleted when the handler is attached) (MONAI's ``CheckpointSaver`` deletes the previous best
    before writing the next in place, non-atomically). The best value is part of the training state
    (``state_dict``/``load_state_dict``, saved by :class:`TrainingCheckpoint`), so a resumed run keeps comparing
    against it instead of overwriting the best weights with its first validation.
    """

    def __init__(self, network: torch.nn.Module, path: str, metric: str = "val_psnr"):
        self.network = network
        self.path = path
        self.metric = metric
        self.best = -math.inf

    def attach(self, engine: Engine) -> None:
        remove_interrupted(self.path)  # a best-weights save killed half-way, in an earlier run
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        value = float(engine.state.metrics[self.metric])
        if value > self.best:
            self.best = value
            save_weights(self.network, self.path, overwrite=True)
            logger.info("best %s %.4f: wrote %s", self.metric, value, self.path)

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best = float(state["best"])


class ExportWeights:
    """At the end of training, write the network's bare state dict (what ``models/*.pt`` ship) to ``path`` atomically
    (the temporary file of an export killed in an earlier run is deleted when the handler is attached)."""

    def __init__(self, network: torch.nn.Module, path: str):
        self.network = network
        self.path = path

    def attach(self, engine: Engine) -> None:
        remove_interrupted(self.path)  # an export killed half-way, in an earlier run
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        save_weights(self.network, self.path, overwrite=True)
        logger.info("wrote %s", self.path)
