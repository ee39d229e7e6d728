#!/usr/bin/env bash
# Reproduce the shipped lung weights (models/lung_teacher.pt, models/lung_model.pt) and the VoxelMorph baseline of the
# lung phantom table: phantoms -> teacher -> student -> VoxelMorph, seed 0, deterministic, on CPU.
#
#   bash tools/train_lung_phantom.sh [RUNS_DIR]     (default runs/lung_phantom; resumable: run it again)
#
# No real 4D-Lung data is reachable here, so these weights know the lung 4D CT phantom only (48^3 grid, 6.7 mm
# voxels); they are a worked example of the lung pipeline, not a clinical model. Copy the results into models/ with
#   cp RUNS_DIR/teacher/teacher_best.pt models/lung_teacher.pt; cp RUNS_DIR/student/student_best.pt models/lung_model.pt
set -euo pipefail -f
R=$(realpath -m "${1:-$(dirname "$0")/../runs/lung_phantom}")
cd "$(dirname "$0")/.."
GRID="[48,48,48]"
[ -d "$R/train" ] || python -m scripts phantom --kind lung --out "$R/train" --num_cases 20 --seed 1 --shape 48,48,48
[ -d "$R/val" ] || python -m scripts phantom --kind lung --out "$R/val" --num_cases 3 --seed 2 --shape 48,48,48
[ -d "$R/test" ] || python -m scripts phantom --kind lung --out "$R/test" --num_cases 5 --seed 3 --shape 48,48,48
# --lambda_r 0.1: the shipped lung weights predate the configs' 0.01 (docs/design_decisions.md, "lambda_r")
COMMON=(--dataset lung4d --dataset_dir "$R/train" --spatial_size "$GRID" --learning_rate 0.001 --epoch_length 200 --lambda_r 0.1
        --val_interval 1 --num_epochs 3 --val_dataset_dir "$R/val" --val_split all)
python -m monai.bundle run --config_file configs/train_teacher.json "${COMMON[@]}" --output_dir "$R/teacher"
python -m monai.bundle run --config_file "['configs/train_teacher.json','configs/train_student.json']" "${COMMON[@]}" \
    --output_dir "$R/student" \
    --teacher_weights "$R/teacher/teacher_best.pt"
python -m monai.bundle run --config_file configs/train_voxelmorph.json --dataset lung4d --dataset_dir "$R/train" \
    --spatial_size "$GRID" --learning_rate 0.001 --num_epochs 40 --output_dir "$R/voxelmorph"
python -m scripts evaluate --dataset_dir "$R/test" --dataset lung4d --split all --spatial_size "$GRID" \
    --model "$R/student/student_best.pt" --teacher "$R/teacher/teacher_best.pt" \
    --voxelmorph "$R/voxelmorph/voxelmorph.pt" --output_dir "$R/eval"
