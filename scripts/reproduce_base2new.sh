#!/bin/bash
# Base-to-new generalisation on the 11 datasets x seeds 1-3, then the Base / New / HM table.
#   bash scripts/reproduce_base2new.sh [KEY VALUE ...]     (DATASETS / SEEDS to narrow)
source "$(dirname "$0")/_common.sh"
# SWEEP="--gpus 0,1,2,3" (or any sweep options, "" for the defaults) hands the same runs to the sweep:
[ -z "${SWEEP+x}" ] || DATA="$DATA" OUTPUT="$OUTPUT" TRAINER="$TRAINER" \
  exec "$PYTHON" -m mutual_prompt.sweep run base2new $SWEEP "$@"
CFG=${CFG:-$BASE2NEW_CFG}
set_shots "$BASE2NEW_SHOTS" "$@"
DATASETS=${DATASETS:-$BASE2NEW_DATASETS}
SEEDS=${SEEDS:-$BASE2NEW_SEEDS}
for DATASET in $DATASETS; do
  for SEED in $SEEDS; do
    bash scripts/base2new_train.sh "$DATASET" "$SEED" "$@"
    bash scripts/base2new_test.sh "$DATASET" "$SEED" "$@"
  done
done
"$PYTHON" parse_test_res.py --base2new "${OUTPUT}/base2new" --trainer "$TRAINER" --cfg "$CFG" \
  --shots "$SHOTS" --seeds $SEEDS --datasets $DATASETS
