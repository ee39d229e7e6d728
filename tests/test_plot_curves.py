"""Training curves are read back from TensorBoard logs in step order and drawn to a PNG."""

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from scripts.research.plot_curves import plot_curves, read_scalars


def test_scalars_round_trip_and_png(tmp_path):
    with SummaryWriter(str(tmp_path / "run")) as writer:
        for step in (3, 1, 2):
            writer.add_scalar("loss", 1.0 / step, step)
        writer.add_scalar("val_psnr", 28.5, 1)
    scalars = read_scalars(tmp_path / "run")
    np.testing.assert_array_equal(scalars["loss"][0], [1, 2, 3])
    np.testing.assert_allclose(scalars["loss"][1], [1.0, 0.5, 1 / 3], rtol=1e-6)
    out = plot_curves({"a": str(tmp_path / "run")}, str(tmp_path / "c.png"), window=2)
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
