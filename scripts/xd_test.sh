#!/bin/bash
# Evaluate the ImageNet-trained model on another dataset (all its classes):
#   bash scripts/xd_test.sh DATASET SEED [KEY VALUE ...]
CFG=${CFG:-vit_b16_c4_ep5_batch4_ctxv1_xd}
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/xd_test.sh DATASET SEED [KEY VALUE ...]" "$@"
DATASET=$1
SEED=$2
SOURCE=${SOURCE:-imagenet}
LOADEP=${LOADEP:-$(config_max_epoch)}
DIR=${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
run_once "$DIR" "=> result" "$DATASET" "$SEED" \
  --model-dir "${OUTPUT}/${SOURCE}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}" \
  --load-epoch "$LOADEP" --eval-only "${@:3}"
