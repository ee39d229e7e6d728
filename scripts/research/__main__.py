"""Research tools, apart from the product's verbs: ``python -m scripts.research <verb> --help``.

    python -m scripts.research ceilings --dataset_dir ACDC/training --spatial_size "[96,96,8]" --output_dir ceilings
    python -m scripts.research score_interpolate --dataset_dir ACDC/training --output_dir scores
    python -m scripts.research ablations --dataset_dir phantom --epochs 2
    python -m scripts.research plot_curves --runs "{'student': 'runs/student'}" --out curves.png
"""

import sys

from scripts.utils.cli import run_verbs

VERBS = {
    "ceilings": "scripts.research.ceilings:ceilings",
    "score_interpolate": "scripts.research.score_interpolate:score_interpolate",
    "ablations": "scripts.research.ablations:ablations",
    "plot_curves": "scripts.research.plot_curves:plot_curves",
}


def main(argv=None) -> int:
    """Run one research verb (same conventions as ``python -m scripts``)."""
    return run_verbs(VERBS, argv, "scripts.research")


if __name__ == "__main__":
    sys.exit(main())
