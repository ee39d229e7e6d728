"""MONAI's bundle checks, offline: verify_metadata against the vendored schema, verify_net_in_out on network_def,
``download_large_files`` on ``large_files.yml`` (nothing to download: the weights ship in models/) and the md5
manifest of the shipped weights (checked by MONAI's own check_hash)."""

import ast
import copy
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.apps.utils import check_hash
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

from scripts.utils.paths import ROOT
from tests.small_bundle import OVERRIDES
from tools.update_large_files import check_large_files, main, update_large_files

META = ROOT / "configs" / "metadata.json"
CONFIG = ROOT / "configs" / "inference.json"
SCHEMA = ROOT / "docs" / "schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"  # the published meta_schema_20240725.json
WEIGHTS = ("models/model.pt", "models/cine_model.pt", "models/neighbour_refinement.pt", "models/cycle_clock.json",
           "models/teacher.pt",
           "models/voxelmorph.pt", "models/lung_model.pt", "models/lung_teacher.pt", "models/v0.2.0/teacher.pt",
           "models/v0.2.0/model.pt", "models/v0.5.0/model.pt", "models/v0.7.0/teacher.pt",
           "models/v0.10.0/neighbour_refinement.pt")


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


def test_metadata_names_the_monai_label_app():
    apps = _metadata()["supported_apps"]
    assert apps, "supported_apps is empty"
    for folder in apps.values():
        assert (ROOT / folder / "main.py").is_file(), folder


def test_metadata_eval_metrics_are_the_model_cards_student_row():
    """``eval_metrics`` repeat the shipped student's ACDC 091-100 row of docs/README.md (PSNR, NCC, SSIM, NMSE)."""
    row = next(line for line in (ROOT / "docs" / "README.md").read_text().splitlines()
               if line.startswith("| **student (shipped"))
    cells = [c.strip().replace("*", "") for c in row.strip("|").split("|")]
    psnr, ncc, ssim, nmse = float(cells[1].split("±")[0]), float(cells[2]), float(cells[3]), float(cells[4])
    assert _metadata()["eval_metrics"] == {"acdc_091_100_psnr": psnr, "acdc_091_100_ncc": ncc,
                                           "acdc_091_100_ssim": ssim, "acdc_091_100_nmse": nmse}


# --- verify_net_in_out -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [torch.tensor([0.25]), 0.8])
def test_network_matches_declared_io(t):
    """The config's own network_def (full width) on a 12^3 grid (the metadata declares any size, "*"), t as a tensor
    or a number."""
    verify_net_in_out("network_def", meta_file=str(META), config_file=str(CONFIG), device="cpu", any=12,
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
                          config_file=str(CONFIG), device="cpu", any=16, **OVERRIDES)


# --- large_files.yml ---------------------------------------------------------------------------------------------
def _manifest(root: Path = ROOT) -> list[dict]:
    return ConfigParser.load_config_file(root / "large_files.yml")["bundled_files"]


def test_large_files_ships_the_weights_and_lists_their_hashes():
    listing = ConfigParser.load_config_file(ROOT / "large_files.yml")
    assert listing["large_files"] == []  # the weights are in the repository: nothing to download
    entries = _manifest()
    assert [e["path"] for e in entries] == list(WEIGHTS)
    assert {e["hash_type"] for e in entries} == {"md5"}
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "models").rglob("*") if p.suffix in (".pt", ".json")}
    assert shipped <= set(WEIGHTS), shipped - set(WEIGHTS)  # every shipped file has its hash


@pytest.mark.parametrize("name", WEIGHTS)
def test_large_file_hash_matches(name):
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"{name} not in this checkout")
    entry = next(e for e in _manifest() if e["path"] == name)
    assert check_hash(path, entry["hash_val"], entry["hash_type"]), (
        f"{name} changed: run `python -m tools.update_large_files` and commit large_files.yml"
    )


@pytest.mark.parametrize("with_weights", [True, False])
def test_download_large_files_command_runs_clean(tmp_path, with_weights):
    """``python -m monai.bundle download_large_files --bundle_path B`` exits 0 and writes nothing, with the weights
    in place or without them (a copy of the bundle that lacks models/ is not an error for it: nothing is hosted)."""
    shutil.copy(ROOT / "large_files.yml", tmp_path / "large_files.yml")
    if with_weights:
        (tmp_path / "models").mkdir()
        for name in WEIGHTS:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(b"weights")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "download_large_files", "--bundle_path",
                           str(tmp_path)], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_update_large_files_then_check(tmp_path):
    (tmp_path / "models").mkdir()
    shutil.copy(ROOT / "large_files.yml", tmp_path / "large_files.yml")
    contents = {name: f"weights of {name}".encode() for name in WEIGHTS}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    hashes = update_large_files(tmp_path)
    assert hashes == {name: hashlib.md5(data).hexdigest() for name, data in contents.items()}
    assert [(e["path"], e["hash_val"]) for e in _manifest(tmp_path)] == list(hashes.items())
    assert ConfigParser.load_config_file(tmp_path / "large_files.yml")["large_files"] == []
    assert check_large_files(tmp_path) == [] and main(["--check", "--bundle_root", str(tmp_path)]) == 0
    (tmp_path / WEIGHTS[1]).write_bytes(b"other teacher")
    (tmp_path / WEIGHTS[2]).unlink()
    assert check_large_files(tmp_path) == [f"{WEIGHTS[1]}: md5 differs from large_files.yml", f"{WEIGHTS[2]}: missing"]
    assert main(["--check", "--bundle_root", str(tmp_path)]) == 1


def test_update_large_files_keeps_entry_of_missing_file(tmp_path):
    shutil.copy(ROOT / "large_files.yml", tmp_path / "large_files.yml")
    (tmp_path / "models").mkdir()
    (tmp_path / WEIGHTS[0]).write_bytes(b"student weights")
    before = {e["path"]: e for e in _manifest(tmp_path)}
    assert list(update_large_files(tmp_path)) == [WEIGHTS[0]]
    assert _manifest(tmp_path)[1] == before[WEIGHTS[1]]


# --- training scripts --------------------------------------------------------------------------------------------
FAKE_PYTHON = """#!{python}
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
for flag, names in (("--output_dir", ("teacher_best.pt", "student_best.pt", "last_checkpoint_1827.pt")), ("--out", ())):
    if flag in args:
        out = pathlib.Path(args[args.index(flag) + 1])
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            (out / name).write_bytes(b"weights")
"""


def _run_script(tmp_path: Path, *args: str) -> list[list[str]]:
    """Run a tools/ training script with ``python`` replaced by a recorder (and ``git`` by a failure); returns the
    argument lists ``python`` was called with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(FAKE_PYTHON.format(python=sys.executable))
    (bin_dir / "git").write_text("#!/bin/sh\necho git is not available in a released bundle >&2\nexit 1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", *args], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _option(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


def test_train_acdc_script_starts_from_shipped_weights_and_merges_the_student_config(tmp_path):
    data, runs = tmp_path / "ACDC", tmp_path / "runs"
    data.mkdir()
    calls = _run_script(tmp_path, str(ROOT / "tools" / "train_acdc.sh"), str(data), str(runs))
    assert [c[:3] for c in calls] == [["-m", "monai.bundle", "run"]] * 6
    teacher, student = "['configs/train_teacher.json','configs/finetune.yaml']", \
        "['configs/train_teacher.json','configs/train_student.json','configs/finetune.yaml']"
    assert [_option(c, "--config_file") for c in calls] == [teacher] * 3 + [student] * 3
    warm = [_option(c, "--pretrained_weights") for c in calls]
    assert warm == ["models/v0.2.0/teacher.pt"] * 3 + ["models/v0.2.0/model.pt"] * 2 + [
        str(runs / "S2" / "last_checkpoint_1827.pt")]
    for path in warm[:5]:
        assert (ROOT / path).is_file(), path  # shipped with the bundle
    assert [_option(c, "--teacher_weights") for c in calls[3:]] == [
        str(runs / f"teacher_e{e}.pt") for e in (1, 5, 12)]
    assert {_option(c, "--dataset_dir") for c in calls} == {str(data)}
    assert [_option(c, "--image_warp") for c in calls[3:]] == ["bilinear"] * 3  # release 0.5.0's students, exactly
    assert _run_script(tmp_path, str(ROOT / "tools" / "train_acdc.sh"), str(data), str(runs)) == []  # all done


def test_train_acdc_script_refuses_a_bundle_without_the_warm_start(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "train_acdc.sh", bundle / "tools")
    (tmp_path / "ACDC").mkdir()
    done = subprocess.run(["bash", str(bundle / "tools" / "train_acdc.sh"), str(tmp_path / "ACDC")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "models/v0.2.0/teacher.pt: release 0.2.0 weights (the warm start) not found" in done.stderr


def test_train_lung_script_makes_phantoms_then_teacher_student_baseline_and_table(tmp_path):
    runs = tmp_path / "runs"
    calls = _run_script(tmp_path, str(ROOT / "tools" / "train_lung_phantom.sh"), str(runs))
    assert [c[:3] for c in calls[:3]] == [["-m", "scripts", "phantom"]] * 3
    configs = [_option(c, "--config_file") for c in calls[3:6]]
    assert configs == ["configs/train_teacher.json", "['configs/train_teacher.json','configs/train_student.json']",
                       "configs/train_voxelmorph.json"]
    assert _option(calls[4], "--teacher_weights") == str(runs / "teacher" / "teacher_best.pt")
    assert calls[6][:3] == ["-m", "scripts", "evaluate"]
    for call in calls[3:6]:
        for name in _option(call, "--config_file").strip("[]").replace("'", "").split(","):
            assert (ROOT / name).is_file(), name


def test_train_refine_script_chains_three_stages_from_release_050(tmp_path):
    data, runs = tmp_path / "ACDC", tmp_path / "runs"
    data.mkdir()
    calls = _run_script(tmp_path, str(ROOT / "tools" / "train_refine.sh"), str(data), str(runs))
    cycle = "'configs/train_teacher.json','configs/train_student.json','configs/train_cycle.json'"
    assert [_option(c, "--config_file") for c in calls] == [
        f"[{cycle}]", f"[{cycle},'configs/train_refine.json']", f"[{cycle}]"]
    assert [_option(c, "--pretrained_weights") for c in calls] == [
        "models/v0.5.0/model.pt", str(runs / "A" / "student_best.pt"), str(runs / "B" / "student_best.pt")]
    assert (ROOT / "models" / "v0.5.0" / "model.pt").is_file()  # shipped with the bundle
    assert [_option(c, "--num_epochs") for c in calls] == ["11", "4", "5"]
    assert _option(calls[2], "--train_dataset_options#cycle#gap_power") == "2.0"
    # stage C chooses on the same small-gap draw as stage B (configs/train_refine.json)
    refine = json.loads((ROOT / "configs" / "train_refine.json").read_text())
    assert ast.literal_eval(_option(calls[2], "--val_dataset_options")) == refine["val_dataset_options"]
    assert {_option(c, "--seed") for c in calls} == {"0"} and {_option(c, "--dataset_dir") for c in calls} == {str(data)}
    # distilled from the teacher the shipped student was distilled from (release 0.7.0's), not the newer one
    assert {_option(c, "--teacher_weights") for c in calls} == {"models/v0.7.0/teacher.pt"}
    assert (ROOT / "models" / "v0.7.0" / "teacher.pt").is_file()
    assert _run_script(tmp_path, str(ROOT / "tools" / "train_refine.sh"), str(data), str(runs)) == []  # all done


def test_train_teacher_cycle_script_continues_release_070s_teacher_on_whole_cycles(tmp_path):
    data, runs = tmp_path / "ACDC", tmp_path / "runs"
    data.mkdir()
    calls = _run_script(tmp_path, str(ROOT / "tools" / "train_teacher_cycle.sh"), str(data), str(runs))
    assert len(calls) == 1
    call = calls[0]
    assert _option(call, "--config_file") == "['configs/train_teacher.json','configs/train_cycle.json']"
    assert _option(call, "--pretrained_weights") == "models/v0.7.0/teacher.pt"
    assert _option(call, "--blend_candidate") == "False"  # the paper's teacher network, as evaluate.json builds it
    assert _option(call, "--train_dataset_options#cycle#gap_power") == "2.0"
    refine = json.loads((ROOT / "configs" / "train_refine.json").read_text())
    assert ast.literal_eval(_option(call, "--val_dataset_options")) == refine["val_dataset_options"]
    assert _option(call, "--seed") == "0" and _option(call, "--output_dir") == str(runs)


def test_the_shipped_teachers_load_strictly_where_the_bundle_uses_them():
    """The whole-cycle teacher is the paper's network, as evaluate.json and the student's training build it."""
    from monai.bundle import ConfigParser

    from scripts.utils.checkpoint import load_weights

    for config in (["evaluate.json"], ["train_teacher.json", "train_student.json"]):
        parser = ConfigParser()
        parser.read_config([ROOT / "configs" / c for c in config])
        for weights in ("teacher.pt", "v0.7.0/teacher.pt"):
            load_weights(parser.get_parsed_content("teacher_def"), ROOT / "models" / weights)  # raises on a mismatch
