#!/bin/bash
# Evaluate the ImageNet-trained model on another dataset (all its classes):
#   bash scripts/xd_test.sh DATASET SEED [KEY VALUE ...]      (LOADEP picks the checkpoint)
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/xd_test.sh DATASET SEED [KEY VALUE ...]" "$@"
DATASET=$1
SEED=$2
CFG=${CFG:-$XD_CFG}
set_shots "$XD_SHOTS" "${@:3}"
SOURCE=${SOURCE:-$XD_SOURCE}
MODEL_DIR=$(fill "$XD_TRAIN_DIR")/seed${SEED}
LOADEP=${LOADEP:-$(max_epoch "$MODEL_DIR" "${@:3}")}
DIR=$(fill "$XD_TEST_DIR")/seed${SEED}
run_test "$DIR" "$MODEL_DIR" "$DATASET" "$SEED" "$XD_TEST_OPTS" "${@:3}"
