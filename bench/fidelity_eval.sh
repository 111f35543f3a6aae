#!/usr/bin/env bash
# Score the arms of bench/fidelity_study.sh on the held-out test splits, each at the state its
# CPU budget reached (its newest checkpoint, EMA weights): music (18 centred 5-second crops, 1 and
# 2 decoding steps) and speech (the first 24 clips, whole, 1 step), with the fidelity columns.
#
#   DATA=/work/data STUDY=/work/fidelity bash bench/fidelity_eval.sh ARM [ARM ...]
#
# Writes $STUDY/eval-music-ARM/ and $STUDY/eval-speech-ARM/ (results.json, report.html); an arm
# named "shipped" scores the shipped default model. Tables: python bench/eval_table.py FILES...
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
STUDY=${STUDY:?set STUDY to the study folder}
for arm in "$@"; do
  if [ "$arm" = shipped ]; then
    model=default
  else
    model=$(find "$STUDY/$arm/checkpoints" -name 'step-*.safetensors' | sort | tail -n 1)
    [ -n "$model" ] || { echo "$arm: no checkpoint" >&2; exit 1; }
  fi
  m2l eval --model "$arm=$model" --data "$DATA/music/test/manifest.jsonl" \
    --out "$STUDY/eval-music-$arm" --seconds 5 --steps 1,2 --audio-items 2 -q --force
  m2l eval --model "$arm=$model" --data "$DATA/speech/test/manifest.jsonl" \
    --out "$STUDY/eval-speech-$arm" --items 24 --steps 1 --audio-items 2 -q --force
done
