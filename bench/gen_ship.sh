#!/usr/bin/env bash
# The shipped generator (src/m2l/weights/m2l-gen-default.safetensors), from nothing but the data:
# the music train split encoded by the shipped codec, packed, a gen-small trained on its mid rows,
# exported as float16. Every step resumes or skips what is done, so run it again after a stop.
#
#   DATA=/work/data WORK=/work/gen STEPS=12000 bash bench/gen_ship.sh [--set KEY=VALUE ...]
#
# Extra options go to m2l gen train. When the default codec changes, run this again with a new
# WORK: tests/generate/test_shipped_generator.py fails until the generator learned its latents.
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
WORK=${WORK:?set WORK to a folder outside the repository}
STEPS=${STEPS:-12000}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
if [ ! -f "$WORK/dataset/index.jsonl" ]; then
  # bf16 on a CPU with AMX: about twice as fast; the latents differ from fp32's by bf16 rounding.
  # A file that cannot be read is named and left out (the train split has one truncated file).
  m2l encode "$DATA/music/train/manifest.jsonl" -o "$WORK/latents" --precision bf16 --workers 0 \
    --skip-existing --no-progress || echo "gen_ship.sh: inputs named above failed; packing the rest" >&2
  m2l pack "$WORK/latents" -o "$WORK/dataset" --manifest "$DATA/music/train/manifest.jsonl"
fi
# shellcheck disable=SC2068
said=$(m2l gen train "$WORK/dataset" --out "$WORK/run" --preset gen-small --set precision=bf16 \
  --set batch_size=16 --set steps="$STEPS" --set warmup=500 --set val_every=500 --set ckpt_every=500 \
  --set log_every=100 $@)
echo "$said"
case "$said" in
  *"done at step"*) m2l gen export "$WORK/run" "$here/../src/m2l/weights/m2l-gen-default.safetensors" --fp16 --force ;;
  *) echo "gen_ship.sh: training stopped before step $STEPS; run again to resume (nothing exported)" >&2; exit 3 ;;
esac
