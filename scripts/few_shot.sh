#!/bin/bash
# Few-shot learning on all classes, seeds 1 2 3 (SEEDS to change):
#   bash scripts/few_shot.sh DATASET SHOTS [KEY VALUE ...]
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/few_shot.sh DATASET SHOTS [KEY VALUE ...]" "$@"
DATASET=$1
SHOTS=$2
set_shots "$SHOTS" "${@:3}"
CFG=${CFG:-$FEW_SHOT_CFG}
for SEED in ${SEEDS:-$FEW_SHOT_SEEDS}; do
  DIR=$(fill "$FEW_SHOT_TRAIN_DIR")/seed${SEED}
  run_train "$DIR" "$DATASET" "$SEED" "$FEW_SHOT_TRAIN_OPTS" "${@:3}"
done
