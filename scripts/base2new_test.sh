#!/bin/bash
# Test a base-trained model on the new classes: bash scripts/base2new_test.sh DATASET SEED [KEY VALUE ...]
# SUB=base tests on the base classes instead; LOADEP picks the checkpoint (default: the training's last epoch).
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/base2new_test.sh DATASET SEED [KEY VALUE ...]" "$@"
DATASET=$1
SEED=$2
CFG=${CFG:-$BASE2NEW_CFG}
set_shots "$BASE2NEW_SHOTS" "${@:3}"
SUB=${SUB:-$BASE2NEW_SUB}
MODEL_DIR=$(fill "$BASE2NEW_TRAIN_DIR")/seed${SEED}
LOADEP=${LOADEP:-$(max_epoch "$MODEL_DIR" "${@:3}")}
DIR=$(fill "$BASE2NEW_TEST_DIR")/seed${SEED}
run_test "$DIR" "$MODEL_DIR" "$DATASET" "$SEED" "$BASE2NEW_TEST_OPTS" "${@:3}"
