#!/usr/bin/env bash
# The paper's claims on a trained stereo Music2Latent2 (issue "Music2Latent2 that works", item 2),
# scored on the music test split beside the shipped v1 default:
#
#   DATA=/work/data OUT=/work/v2-claims V2=RUN/checkpoints/best.safetensors bash bench/v2_claims.sh
#
# 1. quality: v2 vs v1 at 1 and 2 steps (one / two evaluations per chunk), v2 at every sigma_cond
#    of the sweep (0 to 1): ViSQOL, mel, FAD, level, stereo image (18 centred 5-second crops);
# 2. stereo stress items (bench/stereo_items.py): a hard-panned source, a one-sided source,
#    dual-mono and unrelated channels, 1 step (v2 at the codec's sigma_cond);
# 3. MIR: v2 summary features and latents vs v1 on the excerpt probe set (m2l probe).
# Tables: python bench/eval_table.py $OUT/*/results.json; the probe table is $OUT/probe-*/.
set -euo pipefail
DATA=${DATA:?set DATA to the folder made by m2l data fetch}
OUT=${OUT:?set OUT to a results folder outside the repository}
V2=${V2:?set V2 to a v2 checkpoint or model name}
SIGMAS=${SIGMAS:-0,0.2,0.4,0.6,0.8,1.0}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
m2l eval --model "v2=$V2" --data "$DATA/music/test/manifest.jsonl" --out "$OUT/music-v2" \
  --seconds 5 --steps 1,2 --sigma-cond "$SIGMAS" --audio-items 2 -q --force
m2l eval --model v1=default --data "$DATA/music/test/manifest.jsonl" --out "$OUT/music-v1" \
  --seconds 5 --steps 1,2 --audio-items 2 -q --force
[ -d "$OUT/stereo-items" ] ||
  python "$here/stereo_items.py" --data "$DATA/music/test/manifest.jsonl" --out "$OUT/stereo-items"
for kind in pan one-sided dual-mono wide; do
  m2l eval --model "v2=$V2" --model v1=default --data "$OUT/stereo-items/$kind" \
    --out "$OUT/stereo-$kind" --steps 1 --audio-items 1 -q --force
done
if [ "${PROBE:-1}" = 1 ]; then
  m2l probe --model "$V2" --data "$DATA/excerpts/manifest.jsonl" --out "$OUT/probe-v2"
fi
