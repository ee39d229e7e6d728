"""The configs as programs: each setting in one place, merged configs from any working directory, zoo properties."""

import inspect
import json

import pytest
from monai.bundle import ConfigParser, ConfigWorkflow

from scripts.baselines.voxelmorph import voxelmorph_net
from scripts.networks import TMSDFNet
from scripts.utils.paths import ROOT

CONFIGS = ROOT / "configs"
STUDENT = [str(CONFIGS / "train_teacher.json"), str(CONFIGS / "train_student.json")]


def _default(function, name):
    return list(inspect.signature(function).parameters[name].default)


@pytest.mark.parametrize("name", ["inference.json", "train_teacher.json", "evaluate.json"])
def test_every_program_builds_the_shipped_architecture(name):
    """The encoder widths each program states are the teacher's and student's (one class family) defaults, which the shipped weights have."""
    assert json.loads((CONFIGS / name).read_text())["channels"] == _default(TMSDFNet, "channels")


def test_voxelmorph_sizes_live_in_one_place():
    """train_voxelmorph.json trains the architecture that evaluate.json builds from the Python defaults."""
    train = json.loads((CONFIGS / "train_voxelmorph.json").read_text())
    assert train["vm_channels"] == _default(voxelmorph_net, "channels")
    assert train["vm_final_conv_channels"] == _default(voxelmorph_net, "final_conv_channels")
    assert train["vm_unet_out_channels"] == inspect.signature(voxelmorph_net).parameters["unet_out_channels"].default
    evaluate = json.loads((CONFIGS / "evaluate.json").read_text())
    assert set(evaluate["vm_def"]) == {"_target_"}


def test_student_config_holds_only_what_differs_from_the_teacher():
    student = json.loads((CONFIGS / "train_student.json").read_text())
    teacher = json.loads((CONFIGS / "train_teacher.json").read_text())
    shared = {k for k in student if k in teacher and student[k] == teacher[k]}
    assert not shared, f"train_student.json repeats the teacher's {sorted(shared)}"
    for key in ("spatial_size", "learning_rate", "num_epochs", "lambda_r", "channels", "train", "validate"):
        assert key not in student


def test_merged_student_config_reads_from_any_working_directory(tmp_path, monkeypatch):
    """No ``%`` macro depends on the working directory: one change to the teacher config reaches the student."""
    monkeypatch.chdir(tmp_path)
    parser = ConfigParser()
    parser.read_config(STUDENT)
    parser.update({"spatial_size": [24, 24, 8]})
    assert parser.get_parsed_content("train#dataset#spatial_size") == [24, 24, 8]
    assert parser["stage"] == "student"
    assert parser["network_def"]["_target_"] == "scripts.networks.Student"
    assert parser["train"]["prepare_batch"]["with_teacher"] is True
    assert parser["train"]["inferer"]["teacher"] == "@teacher"
    for path in CONFIGS.glob("*.json"):
        assert '"%' not in path.read_text(), f"{path.name} uses a macro"


@pytest.mark.parametrize("files", [[str(CONFIGS / "train_teacher.json")], STUDENT])
def test_training_configs_have_the_model_zoo_properties(files):
    """MONAI's ConfigWorkflow finds every required training property (train#trainer, train#dataset, train#inferer,
    network_def, validate#evaluator, ...)."""
    workflow = ConfigWorkflow(config_file=files, workflow_type="train", logging_file=False, bundle_root=str(ROOT))
    missing = [name for name, prop in workflow.properties.items()
               if prop.get("required") and workflow.parser.get(prop["id"]) is None]
    assert not missing


def _boolean_switches() -> dict[str, list[str]]:
    """Top-level switches with a boolean default, per config file: what a user overrides with ``--use_dfm false``."""
    switches = {}
    for path in sorted(CONFIGS.glob("*.json")):
        config = json.loads(path.read_text())
        switches[path.name] = [k for k, v in config.items() if isinstance(v, bool) and "#" not in k]
    return switches


def test_every_boolean_switch_reaches_its_consumer_through_parse_bool():
    """``fire`` passes ``--use_align false`` on as the string "false", which is true in Python: every reference to a
    boolean switch (or ``amp``) in a config goes through ``parse_bool``, so "false" is False and "maybe" is refused.
    Exempt: ``overwrite``, which ``atomic_file`` / ``atomic_dir`` parse for every caller (tests/test_atomic.py), and
    inference.json, whose consumers parse their own switches (SeriesInterpolator, MotionRegion, the workflow)."""
    import re

    names = {n for found in _boolean_switches().values() for n in found} - {"overwrite"} | {"amp"}
    for path in sorted(CONFIGS.glob("*.json")):
        if path.name == "inference.json":
            continue
        text = path.read_text()
        for name in names:
            for match in re.finditer(rf"@{name}(?![\w#])", text):
                before = text[max(0, match.start() - 35): match.start()]
                assert before.endswith("parse_bool("), f"{path.name}: @{name} is used without parse_bool"


@pytest.mark.parametrize("word, expected", [("false", False), ("no", False), ("true", True), ("False", False)])
def test_switches_typed_as_words_are_booleans_in_the_built_objects(word, expected):
    parser = ConfigParser()
    parser.read_config(STUDENT)
    parser.update({key: word for key in ("use_align", "use_distill", "use_refinement", "augment", "resume")})
    loss = parser.get_parsed_content("loss")
    assert loss.use_align is expected and loss.use_distill is expected
    network = parser.get_parsed_content("network_def")
    assert (network.refine is not None) is expected
    assert parser.get_parsed_content("train#dataset#augment") is expected
    handlers = parser["train"]["handlers"]
    resume = next(i for i, h in enumerate(handlers) if "@resume" in str(h.get("enabled", "")))
    assert parser.get_parsed_content(f"train#handlers#{resume}#enabled") is expected


def test_a_switch_that_is_not_a_boolean_is_refused_by_name():
    from scripts.utils.errors import user_error

    parser = ConfigParser()
    parser.read_config(STUDENT)
    parser.update({"use_align": "maybe"})
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps it; the bundle's excepthook prints the one line behind
        parser.get_parsed_content("loss")
    assert str(user_error(caught.value)) == "use_align: expected True or False, got 'maybe'"


def test_no_config_or_metadata_file_repeats_a_key():
    """A JSON object with a key twice loads silently with the last value (MONAI only warns): every config and the
    metadata must hold each key once."""

    def unique(pairs):
        keys = [k for k, _ in pairs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        assert not repeated, f"repeated keys {repeated}"
        return dict(pairs)

    files = sorted((ROOT / "configs").glob("*.json"))
    assert any(f.name == "metadata.json" for f in files)
    for path in files:
        try:
            json.loads(path.read_text(), object_pairs_hook=unique)
        except AssertionError as error:
            raise AssertionError(f"{path.name}: {error}") from None


@pytest.mark.parametrize("files", [
    ["train_teacher.json", "train_student.json", "finetune.yaml"],
    ["train_teacher.json", "train_neighbours.json"],
    ["train_teacher.json", "train_neighbours.json", "train_cine.json", "finetune_cine.yaml"],
])
def test_a_sites_training_crop_is_resampled_as_the_motion_region_resamples(files):
    """A site's series (nifti4d) are cut to their moving box and resampled in plane by the rule the product's motion
    region applies at inference (``configs/inference.json``'s ``region``): the same spacing and tolerance."""
    inference = ConfigParser()
    inference.read_config(str(CONFIGS / "inference.json"))
    region = inference.get_parsed_content("region")
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser["dataset"] = "nifti4d"
    options = parser.get_parsed_content("train_dataset_options")
    assert options == parser.get_parsed_content("val_dataset_options")
    assert tuple(options["training_spacing"]) == region.training_spacing
    assert options["zoom_tolerance"] == region.tolerance
    assert options["motion_crop"] is (files[-1] != "train_neighbours.json")  # on in the fine-tuning configs
