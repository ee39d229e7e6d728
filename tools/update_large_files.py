"""The md5 manifest of the weights shipped in ``models/``: ``python -m tools.update_large_files [--check]``.

``large_files.yml`` (bundle root) has two lists:

- ``large_files``: what ``python -m monai.bundle download_large_files --bundle_path .`` downloads (MONAI model-zoo
  format: ``path``, ``url``, ``hash_val``, ``hash_type``). The weights live in the repository beside the code, so
  nothing is downloaded and the list is empty: the command runs clean and changes nothing.
- ``bundled_files``: each shipped weights file with its md5 (``path``, ``hash_val``, ``hash_type``), the same fields
  without ``url``; MONAI's ``check_hash`` verifies them.

Without arguments this recomputes the md5 of every ``bundled_files`` entry whose file exists and rewrites the file
(run it after replacing a file in ``models/``; an entry whose file is missing is kept as it is). With ``--check`` it
only compares and exits 1 when a file is missing or differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from scripts.utils.atomic import atomic_file
from scripts.utils.paths import ROOT

logger = logging.getLogger(__name__)

LARGE_FILES = "large_files.yml"
HEADER = """\
# Large files of this bundle in the MONAI model-zoo format.
# large_files: what `python -m monai.bundle download_large_files --bundle_path .` downloads. The weights are shipped
#   in models/ with the code, so there is nothing to download and the list is empty.
# bundled_files: the shipped weights and their md5. After replacing a file in models/, run
#   `python -m tools.update_large_files`; `python -m tools.update_large_files --check` verifies them.
"""


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The md5 hex digest of the file at ``path``."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle_root: str | os.PathLike = ROOT) -> list[dict]:
    """The ``bundled_files`` entries of ``large_files.yml`` (dicts with path, hash_val, hash_type)."""
    from monai.bundle import ConfigParser

    return list(ConfigParser.load_config_file(Path(bundle_root) / LARGE_FILES).get("bundled_files") or [])


def render(entries: list[dict]) -> str:
    """``large_files.yml`` text: an empty ``large_files`` list and ``entries`` as ``bundled_files``."""
    lines = [HEADER.rstrip("\n"), "large_files: []", "bundled_files:"]
    for entry in entries:
        lines.append(f"  - path: {json.dumps(entry['path'])}")
        lines.extend(f"    {key}: {json.dumps(entry.get(key, ''))}" for key in ("hash_val", "hash_type"))
    return "\n".join(lines) + "\n"


def update_large_files(bundle_root: str | os.PathLike = ROOT) -> dict[str, str]:
    """Recompute the md5 of every listed file that exists and rewrite ``large_files.yml``; returns path -> md5."""
    entries = read_manifest(bundle_root)
    hashes = {}
    for entry in entries:
        path = Path(bundle_root) / entry["path"]
        if not path.is_file():
            logger.warning("%s: not found, its entry is left as it is", path)
            continue
        entry["hash_val"], entry["hash_type"] = file_md5(path), "md5"
        hashes[entry["path"]] = entry["hash_val"]
    with atomic_file(Path(bundle_root) / LARGE_FILES, overwrite=True) as tmp:
        tmp.write_text(render(entries))
    return hashes


def check_large_files(bundle_root: str | os.PathLike = ROOT) -> list[str]:
    """One line per listed file that is missing or whose hash differs (MONAI's ``check_hash``); empty when all match."""
    from monai.apps.utils import check_hash

    problems = []
    for entry in read_manifest(bundle_root):
        path = Path(bundle_root) / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing")
        elif not check_hash(path, entry["hash_val"], entry["hash_type"]):
            problems.append(f"{entry['path']}: {entry['hash_type']} differs from large_files.yml")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the shipped weights with the manifest only")
    parser.add_argument("--bundle_root", default=str(ROOT), help="the bundle folder (default: this bundle)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        problems = check_large_files(args.bundle_root)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for name, value in update_large_files(args.bundle_root).items():
        print(f"{name}: md5 {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
