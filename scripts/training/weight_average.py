"""An exponential moving average of the weights along training (Polyak averaging), validated and kept instead of the
last iterate.

Training runs at batch size 1 (one triplet of 96 x 96 x 8 per step), so the weights after any one step carry that
step's noise: at a constant learning rate the validation PSNR of the last iterate wanders by about +-0.05 dB from one
epoch to the next while the loss creeps. The average of the recent iterates sits nearer the centre of the region
they wander in (Polyak & Juditsky 1992; Izmailov et al. 2018, "Averaging weights leads to wider optima") and costs
one copy of the weights and one multiply-add of them per step, nothing on the forward or backward pass.

:class:`WeightAverage` keeps ``average_i = decay * average_(i-1) + (1 - decay) * weights_i`` after every iteration
(``torch.optim.swa_utils.AveragedModel``; buffers averaged too), starting from the weights training starts from.
Configs validate and save ``module`` (``"val_network": "$@weight_average.module"``), and the average is part of the
training state (``state_dict``), so a resumed run continues the same average. With ``decay`` 0 it is off and
``module`` is the trained network itself.
"""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine, Events
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from scripts.utils.checkpoint import unwrap
from scripts.utils.errors import InputError

__all__ = ["WeightAverage"]

logger = logging.getLogger(__name__)


class WeightAverage:
    """The exponential moving average of ``network``'s weights, updated after every training iteration.

    Args:
        network: the trained network (a ``DistributedDataParallel`` wrapper is looked through).
        decay: weight of the previous average per iteration, in [0, 1); 0 turns averaging off. The average spans
            about ``1 / (1 - decay)`` iterations (0.999: the last thousand).

    Raises:
        InputError: naming ``decay`` when it is not a number in [0, 1).
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.0):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise InputError("ema_decay", f"must be a number in [0, 1) (0: off; 0.999 averages about the last "
                                          f"1,000 iterations), got {decay!r}")
        self.network = unwrap(network)
        self.decay = float(decay)
        self.average = (
            AveragedModel(self.network, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
            if self.decay > 0 else None
        )

    @property
    def enabled(self) -> bool:
        return self.average is not None

    @property
    def module(self) -> torch.nn.Module:
        """The averaged network (the trained one when averaging is off): what validation runs and saves."""
        return self.network if self.average is None else self.average.module

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    @torch.no_grad()
    def __call__(self, engine: Engine | None = None) -> None:
        self.average.update_parameters(self.network)

    def state_dict(self) -> dict:
        return {} if self.average is None else self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.average is None:
            if state:
                logger.warning("resume: the checkpoint holds a weight average but ema_decay is 0; it is not used")
            return
        if not state:
            logger.warning("resume: the checkpoint holds no weight average; it restarts from the current weights")
            self.average.n_averaged.zero_()  # the next update copies the weights
            return
        self.average.load_state_dict(state)
