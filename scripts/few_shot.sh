#!/bin/bash
# Few-shot learning on all classes, seeds 1 2 3 (SEEDS to change):
#   bash scripts/few_shot.sh DATASET SHOTS [KEY VALUE ...]
CFG=${CFG:-vit_b16_c4_ep10_batch4_ctxv1_fewshot}
source "$(dirname "$0")/_common.sh"
require_args 2 "bash scripts/few_shot.sh DATASET SHOTS [KEY VALUE ...]" "$@"
DATASET=$1
SHOTS=$2
for SEED in ${SEEDS:-1 2 3}; do
  DIR=${OUTPUT}/few_shot/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
  run_once "$DIR" "Finish training" "$DATASET" "$SEED" DATASET.NUM_SHOTS "$SHOTS" "${@:3}"
done
