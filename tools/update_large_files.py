"""Write the md5 of each weights file listed in ``large_files.yml`` into it: ``python -m tools.update_large_files``.

``large_files.yml`` (bundle root) lists the bundle's large files in the MONAI model-zoo format, which
``python -m monai.bundle download_large_files`` reads: it downloads a missing file from ``url`` and checks an existing
one against ``hash_val`` (``hash_type`` md5, as the zoo uses). Run this after replacing a file in ``models/``; a
listed file that does not exist keeps its entry as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from scripts.utils.atomic import atomic_file
from scripts.utils.paths import ROOT

logger = logging.getLogger(__name__)

LARGE_FILES = "large_files.yml"
HEADER = """\
# Large files of this bundle, in the MONAI model-zoo format (`python -m monai.bundle download_large_files`
# downloads a missing one from `url` and checks an existing one against `hash_val`).
# The weights are committed with the bundle; `url` stays empty until a release hosts them elsewhere.
# After replacing a file in models/, update the hashes with `python -m tools.update_large_files`.
"""


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The md5 hex digest of the file at ``path``."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def render(entries: list[dict]) -> str:
    """``large_files.yml`` text for ``entries`` (dicts with path, url, hash_val, hash_type)."""
    lines = [HEADER.rstrip("\n"), "large_files:"]
    for entry in entries:
        lines.append(f"  - path: {json.dumps(entry['path'])}")
        lines.extend(f"    {key}: {json.dumps(entry.get(key, ''))}" for key in ("url", "hash_val", "hash_type"))
    return "\n".join(lines) + "\n"


def update_large_files(bundle_root: str | os.PathLike = ROOT) -> dict[str, str]:
    """Recompute the md5 of every listed file that exists and rewrite ``large_files.yml``; returns path -> md5."""
    from monai.bundle import ConfigParser

    listing = Path(bundle_root) / LARGE_FILES
    entries = ConfigParser.load_config_file(listing)["large_files"]
    hashes = {}
    for entry in entries:
        path = Path(bundle_root) / entry["path"]
        if not path.is_file():
            logger.warning("%s: not found, its entry is left as it is", path)
            continue
        entry["hash_val"], entry["hash_type"] = file_md5(path), "md5"
        hashes[entry["path"]] = entry["hash_val"]
    with atomic_file(listing, overwrite=True) as tmp:
        tmp.write_text(render(entries))
    return hashes


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, value in update_large_files().items():
        print(f"{name}: md5 {value}")
