#!/bin/bash
# Few-shot learning with 1, 2, 4, 8 and 16 shots on the 11 datasets, seeds 1-3, then one summary each;
# first, once per dataset, zero-shot CLIP (the reference line of the few-shot tables and figures), and
# after each number of shots, linear-probe CLIP with those shots and seeds (their reference curve).
# Last, the few-shot table of them all (datasets x shots), as the sweep prints it.
source "$(dirname "$0")/_common.sh"
# SWEEP="--gpus 0,1,2,3" (or any sweep options, "" for the defaults) hands the same runs to the sweep:
[ -z "${SWEEP+x}" ] || DATA="$DATA" OUTPUT="$OUTPUT" TRAINER="$TRAINER" \
  exec "$PYTHON" -m mutual_prompt.sweep run few_shot $SWEEP "$@"
CFG=${CFG:-$FEW_SHOT_CFG}
for DATASET in ${DATASETS:-$FEW_SHOT_DATASETS}; do
  run_zero_shot "$DATASET" "$@"
  [ -z "$ZERO_SHOT_DIR" ] || "$PYTHON" parse_test_res.py "$ZERO_SHOT_DIR" --test-log
  for SHOTS in ${SHOT_LIST:-$FEW_SHOT_SHOT_LIST}; do
    bash scripts/few_shot.sh "$DATASET" "$SHOTS" "$@"
    DIR=$(fill "$FEW_SHOT_TRAIN_DIR")
    "$PYTHON" parse_test_res.py "$DIR"
    run_linear_probe "$DATASET" "$SHOTS" "$@"
    [ -z "$LINEAR_PROBE_DIR" ] || "$PYTHON" parse_test_res.py "$LINEAR_PROBE_DIR"
  done
done
echo
"$PYTHON" -m mutual_prompt.sweep status few_shot "$@" --tables --repo "$REPO_ROOT" --output "$OUTPUT" --data "$DATA" \
  --trainer "$TRAINER" --cfg "$CFG" --datasets ${DATASETS:-$FEW_SHOT_DATASETS} \
  --shot-list ${SHOT_LIST:-$FEW_SHOT_SHOT_LIST} --seeds ${SEEDS:-$FEW_SHOT_SEEDS}
