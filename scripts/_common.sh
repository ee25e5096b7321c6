# Sourced by the run scripts: repository root, overridable settings, and the skip/resume rule.
# Every setting below can be overridden from the environment, e.g. DATA=/data TRAINER=CoCoOp bash ...
set -euo pipefail
# The scripts live in scripts/ here and in scripts/mutual_prompt/ of a host repository (see
# mutual_prompt.install_into): the root is the nearest folder above them that holds train.py.
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"
while [ ! -f "$REPO_ROOT/train.py" ]; do
  if [ "$REPO_ROOT" = / ]; then
    echo "no train.py in any folder above $SCRIPT_DIR" >&2
    exit 2
  fi
  REPO_ROOT="$(dirname "$REPO_ROOT")"
done
cd "$REPO_ROOT"

PYTHON="${PYTHON:-python}"
DATA="${DATA:-$REPO_ROOT/data}"
TRAINER="${TRAINER:-MutualPrompt}"
CFG="${CFG:-vit_b16_c4_ep10_batch1_ctxv1}"
SHOTS="${SHOTS:-16}"
OUTPUT="${OUTPUT:-output}"

# Epoch whose checkpoint the test scripts load: the config's OPTIM.MAX_EPOCH unless LOADEP is set.
config_max_epoch() {
  "$PYTHON" - "configs/trainers/${TRAINER}/${CFG}.yaml" <<'PY'
import sys, yaml
with open(sys.argv[1]) as f:
    cfg = yaml.safe_load(f) or {}
print((cfg.get("OPTIM") or {}).get("MAX_EPOCH", 10))
PY
}

# run_once DIR END_SIGNAL DATASET SEED train.py-args...: skip DIR when it already holds a finished
# run, else run train.py on DATASET's config with $TRAINER's $CFG, DATA and SEED, then the given
# arguments (an interrupted training run in DIR resumes from its last checkpoint).
run_once() {
  local dir="$1" signal="$2" dataset="$3" seed="$4"
  shift 4
  if "$PYTHON" -c 'import sys; from mutual_prompt.tools.results import parse_run; sys.exit(parse_run(sys.argv[1], end_signal=sys.argv[2]) is None)' "$dir" "$signal"; then
    echo "The results exist at ${dir} (so skip this job)"
    return 0
  fi
  "$PYTHON" train.py --output-dir "$dir" --root "$DATA" --seed "$seed" --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${dataset}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" "$@"
}

require_args() {
  local n="$1" usage="$2"
  shift 2
  if [ "$#" -lt "$n" ]; then
    echo "usage: $usage" >&2
    exit 2
  fi
}
