#!/usr/bin/env bash
# The Music2Latent2 study (issue "Music2Latent2 that works"): stereo v2 models trained from
# scratch on the music train split for the same CPU budget each (bench/cpu_budget.py: CPU-seconds
# of the trainer and its data worker), two arms at a time with 1 torch thread each.
#
#   DATA=/work/data STUDY=/work/v2-study BUDGET=3600 bash bench/v2_study.sh [ARM ...]
#
# Arms (default: fast winner deep wide), all on small-v2-stereo (joint stereo, 8.9 M parameters):
#   fast     the `fast` recipe of the CPU presets (curriculum, spectral loss weight 8)
#   winner   fast + the fidelity study's winning terms (two-step loss 1, band-level term 16)
#   deep     winner with 8 transformer blocks per module instead of 4 (11.7 M parameters)
#   wide     winner with transformer width 192 (6 heads) instead of 128 (12.1 M parameters)
# Each run folder is $STUDY/ARM; an interrupted arm resumes with the same command, for what is
# left of its budget. Score: bench/v2_eval.sh.
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
STUDY=${STUDY:?set STUDY to a folder outside the repository}
BUDGET=${BUDGET:-3600}
STEPS=${STEPS:-4000}  # the schedule's length (the budget stops an arm long before it)
mkdir -p "$STUDY"
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/study_common.sh
. "$here/study_common.sh"

arm_args() {
  local winner="--set rollout_weight=1 --set level_weight=16"
  case $1 in
    fast) echo "" ;;
    winner) echo "$winner" ;;
    deep) echo "$winner --set model_set=depth=8" ;;
    wide) echo "$winner --set model_set=dim=192,heads=6" ;;
    *) echo "unknown arm $1" >&2; return 1 ;;
  esac
}

common=(--data "$DATA/music/train" --val "$DATA/music/val" --no-progress
  --set steps="$STEPS" --set val_every=100 --set ckpt_every=50 --set val_items=8 --set val_seconds=3
  --set workers=1 --set tensorboard=false --set precision=bf16)

run_arm() {
  local arm=$1 left args
  args=$(arm_args "$arm")
  left=$((BUDGET - $(spent "$arm")))
  [ "$left" -gt 0 ] || { echo "$arm: budget spent"; return 0; }
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 python "$here/cpu_budget.py" --report "$STUDY/$arm.budget.json" "$left" -- \
    m2l train small-v2-stereo --out "$STUDY/$arm" "${common[@]}" $args >> "$STUDY/$arm.log" 2>&1
}

arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(fast winner deep wide)
for arm in "${arms[@]}"; do arm_args "$arm" > /dev/null; done  # refuse a typo before any run
in_pairs run_arm "${arms[@]}"
echo "study arms done: ${arms[*]}"
