# Sourced by the run scripts: repository root, overridable settings, the protocols (protocols.sh),
# and the skip/resume rule. Every setting below, and each protocol's defaults, can be overridden
# from the environment, e.g. DATA=/data TRAINER=CoCoOp CFG=... bash ...
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
source "$SCRIPT_DIR/protocols.sh"

PYTHON="${PYTHON:-python}"
DATA_UNSET="${DATA-unset}"  # "unset" when DATA is not in the environment: run_once says which folder it reads
DATA="${DATA:-$REPO_ROOT/data}"
TRAINER="${TRAINER:-MutualPrompt}"
OUTPUT="${OUTPUT:-output}"

# fill TEMPLATE: a template of protocols.sh with each {NAME} in it replaced by the value of $NAME.
fill() {
  local text="$1" name
  for name in OUTPUT TRAINER CFG SHOTS DATASET SOURCE SUB; do
    case "$text" in *"{$name}"*)
      if [ -z "${!name+x}" ]; then
        echo "protocols.sh: {$name} in '$1' needs $name, which is not set" >&2
        return 2
      fi
      text="${text//"{$name}"/"${!name}"}" ;;
    esac
  done
  printf '%s\n' "$text"
}

# max_epoch MODEL_DIR [KEY VALUE ...]: the epoch whose checkpoint a test loads unless LOADEP is set:
# OPTIM.MAX_EPOCH from these overrides, else the last epoch of the finished training in MODEL_DIR
# (trained with its own OPTIM.MAX_EPOCH override), else from $TRAINER's $CFG config.
max_epoch() {
  "$PYTHON" -c 'import sys; from mutual_prompt.tools.protocols import max_epoch; print(max_epoch(sys.argv[1], sys.argv[3:], sys.argv[2]))' \
    "configs/trainers/${TRAINER}/${CFG}.yaml" "$@"
}

# set_shots DEFAULT [KEY VALUE ...]: SHOTS, the N of the folders' shots_N, kept in step with the
# shots the run uses: a DATASET.NUM_SHOTS override (the last one; it comes after the protocol's
# own) sets it, else $SHOTS, else DEFAULT. A SHOTS that disagrees with the override is an error.
set_shots() {
  local default="$1" given="" key
  shift
  while [ "$#" -ge 2 ]; do
    key="$1"
    [ "$key" != DATASET.NUM_SHOTS ] || given="$2"
    shift 2
  done
  if [ -z "$given" ]; then
    SHOTS="${SHOTS:-$default}"
  elif [ -n "${SHOTS:-}" ] && [ "$SHOTS" != "$given" ]; then
    echo "SHOTS=$SHOTS names the folders shots_$SHOTS, but the override DATASET.NUM_SHOTS $given trains on" \
      "$given shots: give one of them, or the same number to both" >&2
    exit 2
  else
    SHOTS="$given"
  fi
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
  if [ "$DATA_UNSET" = unset ] && [ "$dataset" != toy_shapes ]; then
    echo "DATA is not set: reading ${dataset} from ${DATA}, the default (export DATA=/path/to/datasets;" \
      "python -m mutual_prompt.doctor --root ${DATA} ${dataset} checks it)" >&2
  fi
  "$PYTHON" train.py --output-dir "$dir" --root "$DATA" --seed "$seed" --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${dataset}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" "$@"
}

# run_train DIR DATASET SEED OPTS [KEY VALUE ...]: run_once of a training on DATASET into DIR, with
# the protocol's OPTS (a *_OPTS template of protocols.sh), then the given overrides.
run_train() {
  local dir="$1" dataset="$2" seed="$3" text
  text=$(fill "$4")
  shift 4
  local -a opts
  read -ra opts <<< "$text"
  run_once "$dir" "Finish training" "$dataset" "$seed" ${opts[@]+"${opts[@]}"} "$@"
}

# run_test DIR MODEL_DIR DATASET SEED OPTS [KEY VALUE ...]: run_once of a test on DATASET into DIR of
# MODEL_DIR's checkpoint of epoch $LOADEP, with the protocol's OPTS, then the given overrides.
run_test() {
  local dir="$1" model_dir="$2" dataset="$3" seed="$4" text
  text=$(fill "$5")
  shift 5
  local -a opts
  read -ra opts <<< "$text"
  run_once "$dir" "=> result" "$dataset" "$seed" --model-dir "$model_dir" --load-epoch "$LOADEP" --eval-only \
    ${opts[@]+"${opts[@]}"} "$@"
}

# reference_config TRAINER [KEY VALUE ...]: the words "CFG KEY VALUE ..." of the reference run of TRAINER
# (ZeroshotMP or LinearProbeMP) that goes with $TRAINER's $CFG: its config of the same backbone and the
# MODEL.BACKBONE.* overrides among the given ones. Fails, saying why on stderr, where it has no such config.
reference_config() {
  local trainer="$1"
  shift
  "$PYTHON" -c 'import sys
from mutual_prompt.tools.protocols import reference
try:
    cfg, opts = reference(sys.argv[1], sys.argv[2], sys.argv[3:])
except (ValueError, FileNotFoundError) as e:
    sys.exit(str(e))
print(cfg, *opts)' "$trainer" "configs/trainers/${TRAINER}/${CFG}.yaml" "$@"
}

# run_zero_shot DATASET [KEY VALUE ...]: run_once of zero-shot CLIP on all of DATASET's classes into
# FEW_SHOT_ZEROSHOT_DIR (the few-shot tables' reference line): ZeroshotMP with its config of $CFG's
# backbone and the MODEL.BACKBONE.* overrides among the given ones. Sets ZERO_SHOT_DIR to the folder
# of its seeds, or, where no ZeroshotMP config has that backbone, says so, sets it empty, runs nothing.
run_zero_shot() {
  local dataset="$1" words
  shift
  ZERO_SHOT_DIR=
  words=$(reference_config ZeroshotMP "$@") || return 0
  local -a zs
  read -ra zs <<< "$words"
  ZERO_SHOT_DIR=$(DATASET="$dataset" CFG="${zs[0]}" fill "$FEW_SHOT_ZEROSHOT_DIR")
  TRAINER=ZeroshotMP CFG="${zs[0]}" run_once "$ZERO_SHOT_DIR/seed1" "=> result" "$dataset" 1 --eval-only --no-load \
    "${zs[@]:1}"
}

# run_linear_probe DATASET SHOTS [KEY VALUE ...]: run_train of linear-probe CLIP on all of DATASET's
# classes with SHOTS shots, each seed, into FEW_SHOT_LINEAR_PROBE_DIR (the few-shot tables' reference
# curve): LinearProbeMP with its config of $CFG's backbone and the MODEL.BACKBONE.* overrides among the
# given ones. Sets LINEAR_PROBE_DIR to the folder of its seeds, or, where no LinearProbeMP config has
# that backbone (or TRAINER is LinearProbeMP: its runs are the protocol's own), sets it empty and runs nothing.
run_linear_probe() {
  local dataset="$1" shots="$2" words seed
  shift 2
  LINEAR_PROBE_DIR=
  [ "$TRAINER" != LinearProbeMP ] || return 0
  words=$(reference_config LinearProbeMP "$@") || return 0
  local -a lp
  read -ra lp <<< "$words"
  LINEAR_PROBE_DIR=$(DATASET="$dataset" SHOTS="$shots" CFG="${lp[0]}" fill "$FEW_SHOT_LINEAR_PROBE_DIR")
  for seed in ${SEEDS:-$FEW_SHOT_SEEDS}; do
    TRAINER=LinearProbeMP CFG="${lp[0]}" SHOTS="$shots" run_train "$LINEAR_PROBE_DIR/seed${seed}" "$dataset" "$seed" \
      "$FEW_SHOT_TRAIN_OPTS" "${lp[@]:1}"
  done
}

require_args() {
  local n="$1" usage="$2"
  shift 2
  if [ "$#" -lt "$n" ]; then
    echo "usage: $usage" >&2
    exit 2
  fi
}
