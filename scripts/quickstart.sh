#!/bin/bash
# The toy world end to end, offline on the CPU: MutualPrompt trained on the base classes of ToyShapes
# (rendered on first use under $DATA), tested on the new classes, beside zero-shot CLIP, as tables.
#   bash scripts/quickstart.sh [KEY VALUE ...]       (SEEDS="1 2 3" for more seeds)
export TRAINER=MutualPrompt CFG=${CFG:-toy}
source "$(dirname "$0")/_common.sh"
export DATA OUTPUT=${OUTPUT}/quickstart PYTHON
SHOTS=${SHOTS:-$BASE2NEW_SHOTS}
SEEDS=${SEEDS:-1}
for SEED in $SEEDS; do
  TRAINER=ZeroshotMP CFG=toy SUB=base bash scripts/base2new_test.sh toy_shapes "$SEED"
  TRAINER=ZeroshotMP CFG=toy SUB=new bash scripts/base2new_test.sh toy_shapes "$SEED"
  bash scripts/base2new_train.sh toy_shapes "$SEED" "$@"
  bash scripts/base2new_test.sh toy_shapes "$SEED" "$@"
done
echo
echo "Zero-shot CLIP (a photo of a {}.) on ToyShapes:"
"$PYTHON" parse_test_res.py --base2new "${OUTPUT}/base2new" --trainer ZeroshotMP --cfg toy \
  --base-split test_base --shots "$SHOTS" --seeds $SEEDS --datasets toy_shapes
echo
echo "MutualPrompt (${CFG}), trained on the base classes:"
"$PYTHON" parse_test_res.py --base2new "${OUTPUT}/base2new" --trainer "$TRAINER" --cfg "$CFG" \
  --shots "$SHOTS" --seeds $SEEDS --datasets toy_shapes
