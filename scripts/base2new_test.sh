#!/bin/bash
# Test a base-trained model on the new classes: bash scripts/base2new_test.sh DATASET SEED [KEY VALUE ...]
# SUB=base tests on the base classes instead; LOADEP picks the checkpoint (default: last epoch).
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/base2new_test.sh DATASET SEED [KEY VALUE ...]" "$@"
DATASET=$1
SEED=$2
SUB=${SUB:-new}
LOADEP=${LOADEP:-$(config_max_epoch)}
COMMON_DIR=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
MODEL_DIR=${OUTPUT}/base2new/train_base/${COMMON_DIR}
DIR=${OUTPUT}/base2new/test_${SUB}/${COMMON_DIR}
run_once "$DIR" "=> result" "$DATASET" "$SEED" \
  --model-dir "$MODEL_DIR" --load-epoch "$LOADEP" --eval-only \
  DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$SUB" "${@:3}"
