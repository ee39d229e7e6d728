"""``python tests/crash_train.py <monai.bundle run arguments>``: run a bundle workflow and die half-way through a save.

With ``CRASH_AT_SAVE=N`` the N-th ``torch.save`` of the process writes the first half of its bytes, flushes them and
SIGKILLs the process, as an out-of-memory kill or a power cut in the middle of writing a checkpoint would. Used by
``tests/test_crash.py``; without ``CRASH_AT_SAVE`` it is plain ``python -m monai.bundle``.
"""

import io
import os
import runpy
import signal
import sys
from pathlib import Path

import torch

_real_save = torch.save
_saves = 0


def _save_then_die(obj, f, *args, **kwargs):
    global _saves
    _saves += 1
    crash_at = int(os.environ.get("CRASH_AT_SAVE", "0"))
    if not crash_at or _saves < crash_at:
        return _real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    _real_save(obj, buffer, *args, **kwargs)
    half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    if hasattr(f, "write"):
        f.write(half)
        f.flush()
    else:
        with open(f, "wb") as handle:
            handle.write(half)
    os.kill(os.getpid(), signal.SIGKILL)


torch.save = _save_then_die
sys.path[0] = str(Path(__file__).resolve().parents[1])  # the bundle root, as for ``python -m``
sys.argv = ["monai.bundle", *sys.argv[1:]]
runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
