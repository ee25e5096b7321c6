#!/bin/bash
# Base-to-new generalisation on the 11 datasets x seeds 1-3, then the Base / New / HM table.
#   bash scripts/reproduce_base2new.sh [KEY VALUE ...]     (DATASETS / SEEDS to narrow)
source "$(dirname "$0")/_common.sh"
DATASETS=${DATASETS:-imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101}
# SWEEP="--gpus 0,1,2,3" (or any sweep options, "" for the defaults) hands the same runs to the sweep:
[ -z "${SWEEP+x}" ] || DATA="$DATA" OUTPUT="$OUTPUT" TRAINER="$TRAINER" CFG="$CFG" SHOTS="$SHOTS" DATASETS="$DATASETS" \
  exec "$PYTHON" -m mutual_prompt.sweep run base2new $SWEEP "$@"
for DATASET in $DATASETS; do
  for SEED in ${SEEDS:-1 2 3}; do
    bash scripts/base2new_train.sh "$DATASET" "$SEED" "$@"
    bash scripts/base2new_test.sh "$DATASET" "$SEED" "$@"
  done
done
"$PYTHON" parse_test_res.py --base2new "${OUTPUT}/base2new" --trainer "$TRAINER" --cfg "$CFG" \
  --shots "$SHOTS" --seeds ${SEEDS:-1 2 3} --datasets $DATASETS
