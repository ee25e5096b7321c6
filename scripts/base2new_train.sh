#!/bin/bash
# Train on the base half of a dataset's classes: bash scripts/base2new_train.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/base2new_train.sh DATASET SEED [KEY VALUE ...]" "$@"
DATASET=$1
SEED=$2
DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
run_once "$DIR" "Finish training" "$DATASET" "$SEED" \
  DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base "${@:3}"
