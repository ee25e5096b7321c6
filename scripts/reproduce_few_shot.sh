#!/bin/bash
# Few-shot learning with 1, 2, 4, 8 and 16 shots on the 11 datasets, seeds 1-3, then one summary each.
CFG=${CFG:-vit_b16_c4_ep10_batch4_ctxv1_fewshot}
source "$(dirname "$0")/_common.sh"
DATASETS=${DATASETS:-imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101}
# SWEEP="--gpus 0,1,2,3" (or any sweep options, "" for the defaults) hands the same runs to the sweep:
[ -z "${SWEEP+x}" ] || DATA="$DATA" OUTPUT="$OUTPUT" TRAINER="$TRAINER" CFG="$CFG" SHOTS="$SHOTS" DATASETS="$DATASETS" \
  exec "$PYTHON" -m mutual_prompt.sweep run few_shot $SWEEP "$@"
for DATASET in $DATASETS; do
  for K in ${SHOT_LIST:-1 2 4 8 16}; do
    bash scripts/few_shot.sh "$DATASET" "$K" "$@"
    "$PYTHON" parse_test_res.py "${OUTPUT}/few_shot/${DATASET}/${TRAINER}/${CFG}_${K}shots"
  done
done
