#!/bin/bash
# Cross-dataset transfer and domain generalisation: train on ImageNet (seeds 1-3), test on the other
# 10 datasets and the 4 ImageNet variants, then one summary per target.
CFG=${CFG:-vit_b16_c4_ep5_batch4_ctxv1_xd}
source "$(dirname "$0")/_common.sh"
TARGETS=${TARGETS:-caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 imagenetv2 imagenet_sketch imagenet_a imagenet_r}
# SWEEP="--gpus 0,1,2,3" (or any sweep options, "" for the defaults) hands the same runs to the sweep:
[ -z "${SWEEP+x}" ] || DATA="$DATA" OUTPUT="$OUTPUT" TRAINER="$TRAINER" CFG="$CFG" SHOTS="$SHOTS" TARGETS="$TARGETS" \
  exec "$PYTHON" -m mutual_prompt.sweep run xd $SWEEP "$@"
for SEED in ${SEEDS:-1 2 3}; do
  bash scripts/xd_train.sh "$SEED" "$@"
  for DATASET in $TARGETS; do
    bash scripts/xd_test.sh "$DATASET" "$SEED" "$@"
  done
done
for DATASET in $TARGETS; do
  "$PYTHON" parse_test_res.py "${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}" --test-log
done
