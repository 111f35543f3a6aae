#!/usr/bin/env bash
# The fidelity recipe study (issue "A faithful codec"), fine-tuning arms: each arm starts from the
# shipped default model (`--init default`) and trains for the same CPU budget (bench/cpu_budget.py:
# CPU-seconds of the trainer and its data worker), two arms at a time with 1 torch thread each.
#
#   DATA=/work/data STUDY=/work/fidelity BUDGET=2400 bash bench/fidelity_study.sh [ARM ...]
#
# Arms (default: all, in this order):
#   control   the shipped recipe continued: curriculum at its last gap, spectral loss (weight 8)
#   phase     control + phase-aware terms (complex STFT L1 + waveform L1, weight 4)
#   rollout   control + the two-step loss (the one-step decode re-noised and decoded again)
#   published the authors' objective (lognormal levels, index delta 0.1 -> 0.001, 1 / gap
#             weights, pseudo-Huber), with the spectral term faded out over steps 50-200
#   level     control + the level term (log band energies, weight 4)
#   rollout-level  rollout + the level term at weight 16 (the two single-term winners, louder)
#   coherence rollout-level + the phase-agreement term (weight 4), which a quieter decode cannot
#             lower (unlike phase's L1): does phase (SI-SDR) move when level cannot pay for it?
#   coherence-16, coherence-100  the same with the phase-agreement term at weight 16 / 100 (100:
#             its gradient about as strong as the level term's, bench/aux_grad_norms.py)
#   speech    rollout-level on music + speech 1:1 (the speech train split beside the music one), as
#             the authors train
#   combined  the published objective with its auxiliary terms kept (spectral 8, level 16,
#             two-step loss 1): the best of every arm at once
# Each run folder is $STUDY/ARM. An interrupted arm resumes with the same command, for what is
# left of its budget: BUDGET less the trainer CPU-seconds its log records (the data worker's few
# percent of the spent part are not counted again).
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
STUDY=${STUDY:?set STUDY to a folder outside the repository}
BUDGET=${BUDGET:-2400}
mkdir -p "$STUDY"
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/study_common.sh
. "$here/study_common.sh"
# shellcheck source=bench/fidelity_arms.sh
. "$here/fidelity_arms.sh"

common=(--init default --data "$DATA/music/train" --val "$DATA/music/val" --no-progress
  --set steps=400 --set lr=1e-4 --set min_lr=1e-6 --set warmup_steps=20 --set val_every=100
  --set ckpt_every=50 --set val_items=8 --set val_seconds=3 --set workers=1 --set tensorboard=false
  --set precision=bf16 --set gap_stage_steps=1)

run_arm() {
  local arm=$1 left
  left=$((BUDGET - $(spent "$arm")))
  [ "$left" -gt 0 ] || { echo "$arm: budget spent"; return 0; }
  # shellcheck disable=SC2046
  OMP_NUM_THREADS=1 python "$here/cpu_budget.py" --report "$STUDY/$arm.budget.json" "$left" -- \
    m2l train small --out "$STUDY/$arm" "${common[@]}" $(arm_args "$arm") > "$STUDY/$arm.log" 2>&1
}

arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(control phase rollout published)
in_pairs run_arm "${arms[@]}"
echo "study arms done: ${arms[*]}"
