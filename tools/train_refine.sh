#!/usr/bin/env bash
# Reproduce the shipped cardiac student (models/model.pt) from release 0.5.0's student on real ACDC, on CPU, seed 0,
# deterministic; every stage is resumable (run the script again after a kill).
#
#   bash tools/train_refine.sh ACDC_TRAINING_DIR [RUNS_DIR]     (default RUNS_DIR: runs/refine)
#
# Patients 001-080 train, 081-090 choose (each stage keeps its best weights on them), 091-100 are never used.
# A  whole cycle (configs/train_cycle.json): release 0.5.0's student (models/v0.5.0/model.pt) warm-started with the
#    refinement's blend candidate (iteration 0 = that student exactly), distilled from release 0.7.0's teacher,
#    11 epochs of 150 iterations, lr 2e-4 (blend candidate 2e-3).
# B  the refinement alone (configs/train_refine.json): from A's best, motion frozen, L_recon on whole-cycle triplets
#    that favour small gaps (gap_power 2, a quarter ED -> ES), 4 epochs of 500 iterations, lr 5e-4.
# C  the whole student on small gaps: from B's best, configs/train_cycle.json with gap_power 2 and B's validation
#    set, distilled from release 0.7.0's teacher, $C_EPOCHS epochs of 150 iterations, lr 1e-4 for every parameter.
# The teacher is models/v0.7.0/teacher.pt (tools/train_acdc.sh), the one these weights were distilled from;
# models/teacher.pt has since continued on whole cycles (tools/train_teacher_cycle.sh).
# Then copy:  cp $R/C/student_best.pt models/model.pt; python -m tools.update_large_files
set -euo pipefail -f
D=$(realpath "${1:?usage: bash tools/train_refine.sh ACDC_TRAINING_DIR [RUNS_DIR]}")
R=$(realpath -m "${2:-$(dirname "$0")/../runs/refine}")
cd "$(dirname "$0")/.."
C_EPOCHS=${C_EPOCHS:-5}
V050=models/v0.5.0/model.pt
T070=models/v0.7.0/teacher.pt
[ -f "$V050" ] || { echo "error: $V050: release 0.5.0's student (the warm start) not found" >&2; exit 2; }
[ -f "$T070" ] || { echo "error: $T070: release 0.7.0's teacher (the distillation source) not found" >&2; exit 2; }
mkdir -p "$R"
CYCLE="'configs/train_teacher.json','configs/train_student.json','configs/train_cycle.json'"
SMALL_GAPS_VAL="{'test_range': [81, 90], 'cycle': {'per_case': 12, 'anchor_fraction': 0.25, 'min_gap': 2, 'gap_power': 2.0, 'seed': 1}}"
once() {  # once NAME COMMAND...: run a stage unless it finished before (a killed stage resumes when run again)
    [ -f "$R/$1.done" ] || { "${@:2}" && touch "$R/$1.done"; }
}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUN=(python -m monai.bundle run --dataset_dir "$D" --seed 0 --teacher_weights "$T070")
once A "${RUN[@]}" --config_file "[$CYCLE]" --output_dir "$R/A" --num_epochs 11 --pretrained_weights "$V050"
once B "${RUN[@]}" --config_file "[$CYCLE,'configs/train_refine.json']" --output_dir "$R/B" --num_epochs 4 \
    --pretrained_weights "$R/A/student_best.pt"
once C "${RUN[@]}" --config_file "[$CYCLE]" --output_dir "$R/C" --num_epochs "$C_EPOCHS" \
    --pretrained_weights "$R/B/student_best.pt" --train_dataset_options#cycle#gap_power 2.0 \
    --val_dataset_options "$SMALL_GAPS_VAL" --learning_rate 0.0001 --blend_lr_factor 1.0 --epoch_length 150
