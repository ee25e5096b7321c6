#!/bin/bash
# Cross-dataset transfer and domain generalisation: train on ImageNet (seeds 1-3), test on the other
# 10 datasets and the 4 ImageNet variants, then one summary per target.
source "$(dirname "$0")/_common.sh"
# SWEEP="--gpus 0,1,2,3" (or any sweep options, "" for the defaults) hands the same runs to the sweep:
[ -z "${SWEEP+x}" ] || DATA="$DATA" OUTPUT="$OUTPUT" TRAINER="$TRAINER" \
  exec "$PYTHON" -m mutual_prompt.sweep run xd $SWEEP "$@"
CFG=${CFG:-$XD_CFG}
set_shots "$XD_SHOTS" "$@"
SOURCE=${SOURCE:-$XD_SOURCE}
TARGETS=${TARGETS:-$XD_TARGETS}
for SEED in ${SEEDS:-$XD_SEEDS}; do
  bash scripts/xd_train.sh "$SEED" "$@"
  for DATASET in $TARGETS; do
    bash scripts/xd_test.sh "$DATASET" "$SEED" "$@"
  done
done
for DATASET in $TARGETS; do
  DIR=$(fill "$XD_TEST_DIR")
  "$PYTHON" parse_test_res.py "$DIR" --test-log
done
