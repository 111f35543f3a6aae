#!/bin/bash
# tiny-v2: published vs fast recipe at 45 CPU-minutes each (issue 10, part 1 check).
# Frozen code (git worktree /work/m2l-work/code at 6830020) so edits in /work/main cannot reach a running trainer.
# published: 765 CPU-s were spent in a first leg (stopped at step 176, see published.budget.json); this leg gets the rest.
cd /work/m2l-work && . /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/m2l-work/code/src
COMMON="--data DATA/music/train --val DATA/music/val --no-progress --set steps=500 --set lr=5e-4 \
  --set warmup_steps=50 --set val_every=100 --set ckpt_every=50 --set val_items=8 --set val_seconds=3 \
  --set workers=1 --set tensorboard=false --set precision=bf16"
[ -f v2study/published.budget2.json ] || python /work/main/bench/cpu_budget.py --report v2study/published.budget2.json 1935 -- python -m m2l train tiny-v2 --out v2study/published $COMMON --set recipe=published
python /work/main/bench/cpu_budget.py --report v2study/fast.budget.json 2700 -- python -m m2l train tiny-v2 --out v2study/fast $COMMON \
  --set recipe=fast --set gap_stage_steps=150 --set spectral_weight=8
echo DONE
