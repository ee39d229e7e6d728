"""Lowest layer: user-facing errors, atomic writes, the bundle root, memory checks, checkpoint I/O, config and CLI runners."""
