#!/usr/bin/env bash
# The fine-tuning stage of the stereo Music2Latent2 default (issue "Music2Latent2 that works"):
# the fidelity study's winner (a two-step loss and a band-level term, bench/fidelity_arms.sh's
# `rollout-level`) applied to a `small-v2-stereo` state trained with `fast` (bench/v2_long.sh),
# as the v1 default got it. ARM picks the two-step path:
#   rollout-level    both chunks of the first decode re-noised to random levels (as v1)
#   rollout-context  the decoder's path: the left chunk re-noised (sigma_cond), the right chunk
#                    started again from sigma_max beside it (`--set rollout_context=true`)
# Run again with the same arguments to resume; stop it at a CPU budget with bench/cpu_budget.py.
#
#   DATA=/work/data INIT=/work/v2-long/fast/checkpoints/best.safetensors RUN=/work/v2-ft/ARM \
#     STEPS=1000 bash bench/v2_finetune.sh ARM [--set KEY=VALUE ...]
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
INIT=${INIT:?set INIT to the small-v2-stereo checkpoint or run folder to start from}
RUN=${RUN:?set RUN to a run folder outside the repository}
STEPS=${STEPS:-1000}
arm=${1:?name the arm: rollout-level or rollout-context}
shift
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/fidelity_arms.sh
. "$here/fidelity_arms.sh"
case $arm in
  rollout-level) recipe=$(arm_args rollout-level) ;;
  rollout-context) recipe="$(arm_args rollout-level) --set rollout_context=true" ;;
  *) echo "unknown arm $arm (rollout-level or rollout-context)" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$RUN")"
# shellcheck disable=SC2086
exec m2l train small-v2-stereo --out "$RUN" --init "$INIT" --data "$DATA/music/train" \
  --val "$DATA/music/val" --no-progress --set steps="$STEPS" --set lr=1e-4 \
  --set min_lr=1e-6 --set warmup_steps=50 --set gap_stage_steps=1 --set val_every=100 \
  --set ckpt_every=50 --set val_items=8 --set val_seconds=3 --set workers=1 \
  --set tensorboard=false --set precision=bf16 $recipe "$@"
