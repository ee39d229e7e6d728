"""A small student for tests of the bundle's tooling: the config's ``network_def`` with narrow layers.

``OVERRIDES`` replaces ``network_def`` in ``configs/inference.json`` (ConfigParser ids -> values), so tools that parse
the bundle config (ckpt_export, verify_net_in_out, the MONAI Label task) build this network; ``save_random_weights``
writes a matching random-init state dict. A forward pass on a 16 x 16 x 8 pair takes well under a second on a CPU.
"""

from pathlib import Path

import torch

from scripts.utils.checkpoint import save_weights

NETWORK_ARGS = {"channels": [4, 4, 8, 8], "def_channels": [4, 4, 8, 8], "refine_channels": [4, 4, 8, 8],
                "projection_channels": [2, 2, 2, 2]}
OVERRIDES = {"network_def": {"_target_": "scripts.networks.Student", **NETWORK_ARGS}}


def save_random_weights(path: Path, seed: int = 1) -> Path:
    """Random-init weights of the small student (deterministic for ``seed``) saved to ``path``."""
    from scripts.networks import Student

    torch.manual_seed(seed)
    return save_weights(Student(**NETWORK_ARGS), path)
