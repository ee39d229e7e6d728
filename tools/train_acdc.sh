#!/usr/bin/env bash
# Reproduce release 0.7.0's cardiac teacher (models/v0.7.0/teacher.pt, the warm start of the shipped teacher:
# tools/train_teacher_cycle.sh) and release 0.5.0's student (models/v0.5.0/model.pt,
# the warm start of the shipped student: tools/train_refine.sh) from real ACDC, on CPU, seed 0,
# deterministic; every stage is resumable (run the script again after a kill).
#
#   bash tools/train_acdc.sh ACDC_TRAINING_DIR [RUNS_DIR]      (default RUNS_DIR: runs/acdc)
#
# Starting point: the weights of release 0.2.0, shipped in models/v0.2.0/ (teacher.pt, model.pt), which an earlier
# code version trained with lambda_r 0.1 (teacher: 1,218 iterations at lr 1e-4, then 406 at lr 1e-3; student: 1,624
# iterations at lr 1e-3; docs/README.md, "Training"). From there, at lambda_r 0.01 (docs/design_decisions.md):
#   T3  teacher, lr 1e-3, 12 epochs of 203 iterations; its best weights after epochs 1, 5 and 12 feed the student
#   S2  student, lr 1e-3, distilled from T3's epoch-1 best for epochs 1-5, then from its epoch-5 best to epoch 9
#   S3  student, lr 2e-4, warm-started from S2's epoch 9, distilled from T3's final best, $S3_EPOCHS epochs; its last
#       weights are models/v0.5.0/model.pt (no selection on the test split); T3's best is models/v0.7.0/teacher.pt.
# Then copy:  cp $R/T3/teacher_best.pt models/v0.7.0/teacher.pt; cp $R/S3/model.pt models/v0.5.0/model.pt
#             python -m tools.update_large_files
# The student runs on the teacher's config merged with what differs for it (configs/train_student.json), and
# configs/finetune.yaml adds the warm start (--pretrained_weights); these students warp bilinearly, as the paper does
# (--image_warp bilinear; fine-tuning the shipped student warps with cubic convolution, as it runs).
set -euo pipefail -f
D=$(realpath "${1:?usage: bash tools/train_acdc.sh ACDC_TRAINING_DIR [RUNS_DIR]}")
R=$(realpath -m "${2:-$(dirname "$0")/../runs/acdc}")
cd "$(dirname "$0")/.."
S3_EPOCHS=${S3_EPOCHS:-5}
V020=models/v0.2.0
for f in "$V020/teacher.pt" "$V020/model.pt"; do
    [ -f "$f" ] || { echo "error: $f: release 0.2.0 weights (the warm start) not found" >&2; exit 2; }
done
mkdir -p "$R"

COMMON=(--dataset_dir "$D" --spatial_size "[96,96,8]" --lambda_r 0.01 --epoch_length 203)
once() {  # once NAME COMMAND...: run a stage unless it finished before (a killed stage resumes when run again)
    [ -f "$R/$1.done" ] || { "${@:2}" && touch "$R/$1.done"; }
}
teacher() {  # teacher EPOCHS: train T3 up to EPOCHS (resuming), keep a copy of its best weights so far
    python -m monai.bundle run --config_file "['configs/train_teacher.json','configs/finetune.yaml']" "${COMMON[@]}" \
        --learning_rate 0.001 --val_interval 1 --num_epochs "$1" --pretrained_weights "$V020/teacher.pt" \
        --output_dir "$R/T3"
    cp "$R/T3/teacher_best.pt" "$R/teacher_e$1.pt"
}
student() {  # student STAGE EPOCHS LR VAL_INTERVAL WARM_START TEACHER
    python -m monai.bundle run \
        --config_file "['configs/train_teacher.json','configs/train_student.json','configs/finetune.yaml']" "${COMMON[@]}" \
        --num_epochs "$2" --learning_rate "$3" --val_interval "$4" --pretrained_weights "$5" --teacher_weights "$6" \
        --image_warp bilinear --output_dir "$R/$1"
}
once T3_e1 teacher 1
once T3_e5 teacher 5
once T3_e12 teacher 12
once S2_e5 student S2 5 0.001 2 "$V020/model.pt" "$R/teacher_e1.pt"
once S2_e9 student S2 9 0.001 2 "$V020/model.pt" "$R/teacher_e5.pt"
once S3 student S3 "$S3_EPOCHS" 0.0002 1 "$R/S2/last_checkpoint_1827.pt" "$R/teacher_e12.pt"
