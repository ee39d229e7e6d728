#!/usr/bin/env bash
# Reproduce the shipped cardiac student (models/model.pt) from release 0.5.0's student on real ACDC, on CPU, seed 0,
# deterministic; both stages are resumable (run the script again after a kill).
#
#   bash tools/train_refine.sh ACDC_TRAINING_DIR [RUNS_DIR] [REFINE_EPOCHS]     (defaults: runs/refine, 12)
#
# Stage A, whole cycle (configs/train_cycle.json): release 0.5.0's student (models/v0.5.0/model.pt) warm-started with
#   the refinement's blend candidate (iteration 0 = that student exactly), distilled from models/teacher.pt, 11 epochs
#   of 150 iterations on whole-cycle triplets of patients 001-080, one thread; its best weights on patients 081-090.
# Stage B, the refinement alone (configs/train_refine.json): from stage A's best, motion frozen, L_recon on
#   whole-cycle triplets that favour small gaps (gap_power 2, a quarter ED -> ES), REFINE_EPOCHS epochs of 500
#   iterations; its best weights on patients 081-090 are the shipped student. Patients 091-100 are never used.
# Then copy:  cp $R/B/student_best.pt models/model.pt; python -m tools.update_large_files
set -euo pipefail -f
D=$(realpath "${1:?usage: bash tools/train_refine.sh ACDC_TRAINING_DIR [RUNS_DIR] [REFINE_EPOCHS]}")
R=$(realpath -m "${2:-$(dirname "$0")/../runs/refine}")
E=${3:-12}
cd "$(dirname "$0")/.."
V050=models/v0.5.0/model.pt
[ -f "$V050" ] || { echo "error: $V050: release 0.5.0's student (the warm start) not found" >&2; exit 2; }
mkdir -p "$R"
CONFIGS="'configs/train_teacher.json','configs/train_student.json','configs/train_cycle.json'"
once() {  # once NAME COMMAND...: run a stage unless it finished before (a killed stage resumes when run again)
    [ -f "$R/$1.done" ] || { "${@:2}" && touch "$R/$1.done"; }
}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
once A python -m monai.bundle run --config_file "[$CONFIGS]" --dataset_dir "$D" --output_dir "$R/A" --seed 0 \
    --num_epochs 11 --pretrained_weights "$V050"
once B python -m monai.bundle run --config_file "[$CONFIGS,'configs/train_refine.json']" --dataset_dir "$D" \
    --output_dir "$R/B" --seed 0 --num_epochs "$E" --pretrained_weights "$R/A/student_best.pt"
