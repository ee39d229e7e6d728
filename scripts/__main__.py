"""The bundle's command-line verbs: ``python -m scripts <verb> --help`` explains each one.

    python -m scripts interpolate --input series.nii.gz --t "[0.25,0.5,0.75]" --output_dir out
    python -m scripts phantom --kind cardiac --out phantom --num_cases 10
    python -m scripts evaluate --dataset_dir phantom --output_dir eval
    python -m scripts superres --dataset_dir /data/ACDC/training --output_dir superres
    python -m scripts bench
    python -m scripts export --out models/model.ts
    python -m scripts to_nifti --input dicom_folder --output site_cines/case01.nii.gz

Research tools (oracles, per-patient scoring, ablations, curves) have their own list: ``python -m scripts.research``.
"""

import sys

from scripts.utils.cli import run_verbs

VERBS = {
    "interpolate": "scripts.inference.cli:interpolate",
    "phantom": "scripts.phantoms.make:phantom",
    "evaluate": "scripts.evaluation.evaluator:evaluate",
    "bench": "scripts.evaluation.bench:bench",
    "superres": "scripts.evaluation.superres:superres",
    "export": "scripts.inference.export:export",
    "to_nifti": "scripts.io.convert:to_nifti",
}


def main(argv=None) -> int:
    """Run one verb; a bad input or an existing output ends with its message on stderr and exit status 2."""
    return run_verbs(VERBS, argv, "scripts")


if __name__ == "__main__":
    sys.exit(main())
