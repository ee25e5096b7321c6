#!/bin/bash
# Few-shot learning with 1, 2, 4, 8 and 16 shots on the 11 datasets, seeds 1-3, then one summary each.
source "$(dirname "$0")/_common.sh"
# SWEEP="--gpus 0,1,2,3" (or any sweep options, "" for the defaults) hands the same runs to the sweep:
[ -z "${SWEEP+x}" ] || DATA="$DATA" OUTPUT="$OUTPUT" TRAINER="$TRAINER" \
  exec "$PYTHON" -m mutual_prompt.sweep run few_shot $SWEEP "$@"
CFG=${CFG:-$FEW_SHOT_CFG}
for DATASET in ${DATASETS:-$FEW_SHOT_DATASETS}; do
  for SHOTS in ${SHOT_LIST:-$FEW_SHOT_SHOT_LIST}; do
    bash scripts/few_shot.sh "$DATASET" "$SHOTS" "$@"
    DIR=$(fill "$FEW_SHOT_TRAIN_DIR")
    "$PYTHON" parse_test_res.py "$DIR"
  done
done
