#!/bin/bash
# Train on all ImageNet classes for cross-dataset transfer and domain generalisation:
#   bash scripts/xd_train.sh SEED [KEY VALUE ...]      (SOURCE=imagenet by default)
CFG=${CFG:-vit_b16_c4_ep5_batch4_ctxv1_xd}
source "$(dirname "$0")/_common.sh"
require_args 1 "bash scripts/xd_train.sh SEED [KEY VALUE ...]" "$@"
SEED=$1
SOURCE=${SOURCE:-imagenet}
DIR=${OUTPUT}/${SOURCE}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
run_once "$DIR" "Finish training" "$SOURCE" "$SEED" DATASET.NUM_SHOTS "$SHOTS" "${@:2}"
