#!/usr/bin/env bash
# The long run of the stereo Music2Latent2 default (issue "Music2Latent2 that works", item 1):
# `small-v2-stereo` (joint stereo, 8.9 M parameters) trained from scratch on the music train split
# with the `fast` recipe, the schedule scaled from the v1 default's long run (lr 5e-4, 100 warm-up
# steps, curriculum stages of STEPS/10 steps), checkpointing every 50 steps (~20 CPU-s each).
# Run again with the same arguments to resume; `--until STEP` stops early.
#
#   DATA=/work/data RUN=/work/v2-long/fast STEPS=3000 bash bench/v2_long.sh [--set KEY=VALUE ...]
#
# Extra options go to m2l train (a GPU lease: --device cuda --set batch_size=64). Score with
# `m2l eval --model v2=RUN/checkpoints/best.safetensors ...` (see BENCHMARKS.md).
#
# The paper's ablation at equal compute (summary embeddings vs ordered latents, >= 2 CPU-hours):
# the same schedule with ordered latents, stopped by its CPU budget, against the checkpoint of
# the long run that had used the same trainer CPU (`cpu_s` in its log.jsonl):
#
#   DATA=/work/data RUN=/work/v2-long/ordered python bench/cpu_budget.py 7200 -- \
#     bash bench/v2_long.sh --set model_set=summary=false
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
RUN=${RUN:?set RUN to a run folder outside the repository}
STEPS=${STEPS:-3000}
mkdir -p "$(dirname "$RUN")"
exec m2l train small-v2-stereo --out "$RUN" --data "$DATA/music/train" --val "$DATA/music/val" \
  --no-progress --set recipe=fast --set steps="$STEPS" --set lr=5e-4 --set warmup_steps=100 \
  --set gap_stage_steps=$((STEPS / 10)) --set val_every=250 --set ckpt_every=50 --set val_items=8 \
  --set val_seconds=3 --set workers=1 --set tensorboard=false --set precision=bf16 "$@"
