#!/bin/bash
# Train on all ImageNet classes for cross-dataset transfer and domain generalisation:
#   bash scripts/xd_train.sh SEED [KEY VALUE ...]      (SOURCE=imagenet by default)
source "$(dirname "$0")/_common.sh"
require_args 1 "bash scripts/xd_train.sh SEED [KEY VALUE ...]" "$@"
SEED=$1
CFG=${CFG:-$XD_CFG}
set_shots "$XD_SHOTS" "${@:2}"
SOURCE=${SOURCE:-$XD_SOURCE}
DIR=$(fill "$XD_TRAIN_DIR")/seed${SEED}
run_train "$DIR" "$SOURCE" "$SEED" "$XD_TRAIN_OPTS" "${@:2}"
