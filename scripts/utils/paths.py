"""Where the bundle lives: its root folder (the one holding ``configs/``, ``models/`` and ``scripts/``)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
