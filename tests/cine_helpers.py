"""Reading a derived DICOM cine back without the bundle's reader: pydicom headers, ITK per temporal position,
``dciodvfy`` errors."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom


def headers(folder):
    """Every dataset (no pixels) under ``folder``."""
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(Path(folder).rglob("*")) if p.is_file()]


def files_by_position(folder):
    """``{TemporalPositionIdentifier: [file, ...]}`` of a derived cine."""
    grouped = {}
    for path in sorted(Path(folder).glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        grouped.setdefault(int(ds.TemporalPositionIdentifier), []).append(str(path))
    return grouped


def itk_geometry(files):
    """Origin (LPS mm), direction (3, 3) and spacing of the volume ITK's GDCM series reader makes of ``files``."""
    import itk

    image = itk.imread([str(f) for f in files]) if len(files) > 1 else itk.imread(str(files[0]))
    return (np.asarray(image.GetOrigin()), np.asarray(image.GetDirection()), np.asarray(image.GetSpacing()),
            itk.array_from_image(image))


def dciodvfy_errors(path):
    """``dciodvfy``'s error lines for ``path`` with attribute values blanked (UIDs, numbers differ between files)."""
    result = subprocess.run([shutil.which("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return {re.sub(r"<[^>]*>", "<>", line) for line in lines if line.startswith("Error")}
