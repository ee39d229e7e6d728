"""MONAI's bundle checks, offline: verify_metadata against the vendored schema, verify_net_in_out on network_def,
and the hashes of ``large_files.yml`` (checked by MONAI's own check_hash and download_large_files)."""

import copy
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.apps.utils import HashCheckError, check_hash
from monai.bundle import (
    ConfigParser,
    download_large_files,
    verify_metadata,
    verify_net_in_out,
)

from scripts.utils.paths import ROOT
from tests.small_bundle import OVERRIDES
from tools.update_large_files import update_large_files

META = ROOT / "configs" / "metadata.json"
CONFIG = ROOT / "configs" / "inference.json"
SCHEMA = ROOT / "docs" / "schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"  # the published meta_schema_20240725.json
WEIGHTS = ("models/model.pt", "models/teacher.pt", "models/voxelmorph.pt", "models/lung_model.pt",
           "models/lung_teacher.pt")


def _metadata() -> dict:
    return json.loads(META.read_text())


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


# --- verify_metadata ---------------------------------------------------------------------------------------------
def test_metadata_verifies_against_vendored_schema():
    # hash_val makes MONAI check the vendored copy is the published schema; with the file present nothing is fetched
    verify_metadata(meta_file=str(META), filepath=str(SCHEMA), hash_val=SCHEMA_MD5, hash_type="md5")


def test_metadata_schema_url_names_vendored_file():
    assert _metadata()["schema"].rsplit("/", 1)[-1] == SCHEMA.name


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda m: m.pop("authors"), "'authors' is a required property"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels="two"), "'two' is not of type"),
        (lambda m: m.update(version=1), "1 is not of type 'string'"),
    ],
)
def test_broken_metadata_fails(tmp_path, breakage, message):
    broken = _metadata()
    breakage(broken)
    with pytest.raises(ValueError, match=message):
        verify_metadata(meta_file=_write(tmp_path / "metadata.json", broken), filepath=str(SCHEMA))


# --- verify_net_in_out -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [torch.tensor([0.25]), 0.8])
def test_network_matches_declared_io(t):
    """The config's own network_def (full width) on the metadata's 8*n grid with n = 1, t as a tensor or a number."""
    verify_net_in_out("network_def", meta_file=str(META), config_file=str(CONFIG), device="cpu", n=1,
                      extra_forward_args={"t": t})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("inputs", {"num_channels": 3}, r"image: expected \(B, 2, X, Y, Z\)"),
        ("outputs", {"num_channels": 2}, "output channel number `1` doesn't match: `2`"),
        ("outputs", {"dtype": "float16"}, "dtype of output data `torch.float32` doesn't match"),
    ],
)
def test_net_in_out_detects_wrong_metadata(tmp_path, field, value, message):
    broken = copy.deepcopy(_metadata())
    key = "image" if field == "inputs" else "pred"
    broken["network_data_format"][field][key].update(value)
    with pytest.raises(ValueError, match=message):
        verify_net_in_out("network_def", meta_file=_write(tmp_path / "metadata.json", broken),
                          config_file=str(CONFIG), device="cpu", n=2, **OVERRIDES)


# --- large_files.yml ---------------------------------------------------------------------------------------------
def _large_files(root: Path = ROOT) -> list[dict]:
    return ConfigParser.load_config_file(root / "large_files.yml")["large_files"]


def test_large_files_lists_the_weights():
    entries = _large_files()
    assert [e["path"] for e in entries] == list(WEIGHTS)
    assert {e["hash_type"] for e in entries} == {"md5"}
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "models").glob("*.pt")}
    assert shipped <= set(WEIGHTS), shipped - set(WEIGHTS)  # every shipped file has its hash


@pytest.mark.parametrize("name", WEIGHTS)
def test_large_file_hash_matches(name):
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"{name} not in this checkout")
    entry = next(e for e in _large_files() if e["path"] == name)
    assert check_hash(path, entry["hash_val"], entry["hash_type"]), (
        f"{name} changed: run `python -m tools.update_large_files` and commit large_files.yml"
    )


def test_update_large_files_then_monai_accepts_them(tmp_path):
    (tmp_path / "models").mkdir()
    shutil.copy(ROOT / "large_files.yml", tmp_path / "large_files.yml")
    contents = {name: f"weights of {name}".encode() for name in WEIGHTS}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    hashes = update_large_files(tmp_path)
    assert hashes == {name: hashlib.md5(data).hexdigest() for name, data in contents.items()}
    assert [(e["path"], e["hash_val"]) for e in _large_files(tmp_path)] == list(hashes.items())
    download_large_files(bundle_path=str(tmp_path))  # every file present and matching: nothing to download
    (tmp_path / WEIGHTS[1]).write_bytes(b"other teacher")
    with pytest.raises(HashCheckError, match="md5 hash check of existing file failed"):
        download_large_files(bundle_path=str(tmp_path))


def test_update_large_files_keeps_entry_of_missing_file(tmp_path):
    shutil.copy(ROOT / "large_files.yml", tmp_path / "large_files.yml")
    (tmp_path / "models").mkdir()
    (tmp_path / WEIGHTS[0]).write_bytes(b"student weights")
    before = {e["path"]: e for e in _large_files(tmp_path)}
    assert list(update_large_files(tmp_path)) == [WEIGHTS[0]]
    assert _large_files(tmp_path)[1] == before[WEIGHTS[1]]
