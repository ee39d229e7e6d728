#!/usr/bin/env bash
# Fine-tune the shipped cardiac student on whole-cycle triplets of real ACDC, with the refinement's blend candidate on,
# on CPU, seed 0, deterministic, resumable (run the script again after a kill).
#
#   bash tools/train_cycle.sh ACDC_TRAINING_DIR [RUNS_DIR] [ITERATIONS]     (defaults: runs/cycle, 600)
#
# Warm start: models/model.pt (student) through scripts.networks.refine.warm_start (the new blend-candidate input
# channel and gate start at zero, so iteration 0 is the shipped student exactly), distilled from models/teacher.pt.
# Data: patients 001-080, 64 triplets per patient drawn once (seed 0) from the whole cycle (gaps 2 frames to half a
# cycle, wrapping around, both directions), a quarter of them ED -> ES; validation on 081-090 (6 triplets each, seed 1)
# after every epoch of 150 iterations; 091-100 are never used. Learning rate 2e-4 (blend-candidate modules 2e-3),
# lambda_r 0.01, lambda_d 0.1, 96 x 96 x 8. The best validation weights are RUNS_DIR/student_best.pt.
set -euo pipefail -f
cd "$(dirname "$0")/.."
D=${1:?usage: bash tools/train_cycle.sh ACDC_TRAINING_DIR [RUNS_DIR] [ITERATIONS]}
R=${2:-runs/cycle}
N=${3:-600}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python -m monai.bundle run \
    --config_file "['configs/train_teacher.json','configs/train_student.json','configs/train_cycle.json']" \
    --dataset_dir "$D" --output_dir "$R" --seed 0 --num_epochs $(( (N + 149) / 150 ))
