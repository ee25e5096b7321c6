#!/bin/bash
# Domain generalisation: the ImageNet-trained model on ImageNetV2, -Sketch, -A and -R.
#   bash scripts/dg_test.sh SEED [KEY VALUE ...]      (TARGETS="imagenetv2 imagenet_a" to choose)
source "$(dirname "$0")/_common.sh"
require_args 1 "bash scripts/dg_test.sh SEED [KEY VALUE ...]" "$@"
SEED=$1
for DATASET in ${TARGETS:-$DG_TARGETS}; do
  bash "$SCRIPT_DIR/xd_test.sh" "$DATASET" "$SEED" "${@:2}"
done
