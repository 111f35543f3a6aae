#!/usr/bin/env bash
# The long run of the fidelity study's winner (issue "A faithful codec", item 4): fine-tune the
# shipped default model with one arm's recipe (bench/fidelity_arms.sh) for STEPS steps, with both
# cores (or a GPU), checkpointing every 100 steps. Run again with the same arguments to resume
# (m2l train resumes an existing run folder); a stopped run loses at most 100 steps.
#
#   DATA=/work/data RUN=/work/fidelity-long/rollout-level STEPS=6000 \
#     bash bench/fidelity_long.sh ARM [--set KEY=VALUE ...]
#
# Extra options go to m2l train (e.g. --device cuda --set batch_size=64 on a GPU lease). Score
# checkpoints with bench/fidelity_eval.sh (STUDY = the folder above RUN, ARM = its name).
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
RUN=${RUN:?set RUN to a run folder outside the repository}
STEPS=${STEPS:-6000}
arm=${1:?name the arm (see bench/fidelity_arms.sh)}
shift
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/fidelity_arms.sh
. "$here/fidelity_arms.sh"
recipe=$(arm_args "$arm")
mkdir -p "$(dirname "$RUN")"
# shellcheck disable=SC2086
exec m2l train small --out "$RUN" --init default --data "$DATA/music/train" --val "$DATA/music/val" \
  --no-progress --set steps="$STEPS" --set lr=1e-4 --set min_lr=1e-6 --set warmup_steps=50 \
  --set val_every=500 --set ckpt_every=100 --set val_items=8 --set val_seconds=3 --set workers=1 \
  --set tensorboard=false --set precision=bf16 --set gap_stage_steps=1 $recipe "$@"
