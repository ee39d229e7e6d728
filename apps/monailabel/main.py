"""MONAI Label app serving the TMSDF-KD bundle's temporal interpolation (see README.md beside this file).

    monailabel start_server --app apps/monailabel --studies <folder of 4D NIfTI files> \
        --conf models <bundle folder>

``--conf models`` names the bundle folder (default: the bundle this app sits in, two folders up); ``--conf checkpoint``
another weights file for its student (default: the bundle's ``models/model.pt``). The app has one infer task,
``interpolation`` (:class:`lib.infers.Interpolation`), no trainers and MONAI Label's default strategy.
"""

import json
import logging
from pathlib import Path

from lib.infers import Interpolation
from monailabel.interfaces.app import MONAILabelApp

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2]


class TMSDFInterpolationApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.bundle_root = Path(conf.get("models") or DEFAULT_BUNDLE).expanduser().resolve()
        self.checkpoint = conf.get("checkpoint")
        metadata = json.loads((self.bundle_root / "configs" / "metadata.json").read_text())
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name=metadata["name"],
                         description=metadata["task"], version=metadata["version"])

    def init_infers(self):
        overrides = {"checkpoint": str(Path(self.checkpoint).expanduser().resolve())} if self.checkpoint else {}
        logger.info("bundle %s, overrides %s", self.bundle_root, overrides)
        return {"interpolation": Interpolation(self.bundle_root, config_overrides=overrides)}
