#!/bin/bash
# Train on the base half of a dataset's classes: bash scripts/base2new_train.sh DATASET SEED [KEY VALUE ...]
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/base2new_train.sh DATASET SEED [KEY VALUE ...]" "$@"
DATASET=$1
SEED=$2
CFG=${CFG:-$BASE2NEW_CFG}
set_shots "$BASE2NEW_SHOTS" "${@:3}"
DIR=$(fill "$BASE2NEW_TRAIN_DIR")/seed${SEED}
run_train "$DIR" "$DATASET" "$SEED" "$BASE2NEW_TRAIN_OPTS" "${@:3}"
