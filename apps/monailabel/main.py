"""MONAI Label app serving the TMSDF-KD bundle's temporal interpolation (see README.md beside this file).

    monailabel start_server --app apps/monailabel --studies <folder of 4D NIfTI files> \
        --conf models <bundle folder>

``--conf models`` names the bundle folder (default: the bundle this app sits in, two folders up); ``--conf checkpoint``
another weights file for its student, used by both tasks (default: the bundle's ``models/model.pt`` between two
frames, ``models/cine_model.pt`` for whole series; with other weights the neighbour refinement is off, as with
``interpolate --model``); ``--conf neighbour_checkpoint`` the weights of the neighbour refinement that the
``upsampling`` task runs (turns it on; for example a site's whole-cine fine-tuning, ``configs/finetune_cine.yaml``,
whose ``cine_student_best.pt`` is then ``--conf checkpoint``, as ``interpolate --neighbour_model``). The app has two
infer tasks,
``interpolation`` (:class:`lib.infers.Interpolation`: the volume at ``t`` between two frames) and ``upsampling``
(:class:`lib.infers.Upsampling`: the whole series ``upsample`` times finer in time), no trainers and MONAI Label's
default strategy.
"""

import json
import logging
from pathlib import Path

from lib.infers import Interpolation, Upsampling
from monailabel.interfaces.app import MONAILabelApp

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2]


class TMSDFInterpolationApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.bundle_root = Path(conf.get("models") or DEFAULT_BUNDLE).expanduser().resolve()
        self.checkpoint = conf.get("checkpoint")
        self.neighbour_checkpoint = conf.get("neighbour_checkpoint")
        metadata = json.loads((self.bundle_root / "configs" / "metadata.json").read_text())
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name=metadata["name"],
                         description=metadata["task"], version=metadata["version"])

    def init_infers(self):
        # other student weights: run by both tasks, with no neighbour refinement (trained with the shipped
        # whole-series student) unless its weights are given too, as `interpolate --model / --neighbour_model` do
        weights = str(Path(self.checkpoint).expanduser().resolve()) if self.checkpoint else None
        overrides = ({"checkpoint": weights, "cine_checkpoint": weights, "neighbour_refinement": False}
                     if weights else {})
        if self.neighbour_checkpoint:
            overrides.update(neighbour_checkpoint=str(Path(self.neighbour_checkpoint).expanduser().resolve()),
                             neighbour_refinement=True)
        logger.info("bundle %s, overrides %s", self.bundle_root, overrides)
        return {"interpolation": Interpolation(self.bundle_root, config_overrides=overrides),
                "upsampling": Upsampling(self.bundle_root, config_overrides=overrides)}
