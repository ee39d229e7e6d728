#!/usr/bin/env bash
# Reproduce the shipped cardiac teacher (models/teacher.pt) from release 0.7.0's teacher (models/v0.7.0/teacher.pt,
# trained on ED -> ES triplets only: tools/train_acdc.sh) on whole-cycle triplets of real ACDC, on CPU, seed 0,
# deterministic, resumable (run the script again after a kill).
#
#   bash tools/train_teacher_cycle.sh ACDC_TRAINING_DIR [RUNS_DIR]     (default RUNS_DIR: runs/teacher_cycle)
#
# configs/train_cycle.json on the teacher's config: whole-cycle triplets of patients 001-080 drawn with gap_power 2
# (small gaps favoured, a quarter ED -> ES), L_recon + L_align, lr 1e-4, lambda_r 0.01, 96 x 96 x 8, the paper's
# network (no blend candidate), $EPOCHS epochs of 150 iterations; the best weights on 081-090 (the small-gap
# validation set of tools/train_refine.sh) are RUNS_DIR/teacher_best.pt; 091-100 are never used.
# Then copy:  cp $R/teacher_best.pt models/teacher.pt; python -m tools.update_large_files
set -euo pipefail -f
D=$(realpath "${1:?usage: bash tools/train_teacher_cycle.sh ACDC_TRAINING_DIR [RUNS_DIR]}")
R=$(realpath -m "${2:-$(dirname "$0")/../runs/teacher_cycle}")
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-10}
V070=models/v0.7.0/teacher.pt
[ -f "$V070" ] || { echo "error: $V070: release 0.7.0's teacher (the warm start) not found" >&2; exit 2; }
SMALL_GAPS_VAL="{'test_range': [81, 90], 'cycle': {'per_case': 12, 'anchor_fraction': 0.25, 'min_gap': 2, 'gap_power': 2.0, 'seed': 1}}"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python -m monai.bundle run \
    --config_file "['configs/train_teacher.json','configs/train_cycle.json']" --dataset_dir "$D" --seed 0 \
    --output_dir "$R" --num_epochs "$EPOCHS" --pretrained_weights "$V070" --blend_candidate False \
    --train_dataset_options#cycle#gap_power 2.0 --val_dataset_options "$SMALL_GAPS_VAL" --learning_rate 0.0001 \
    --epoch_length 150
