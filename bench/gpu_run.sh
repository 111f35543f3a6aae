#!/usr/bin/env bash
# One GPU session (the device tool), run from the repo root with .carry/ (bench/gpu_carry.py) and
# .whl/ (soundfile, soxr, cffi, pycparser, music2latent wheels: bench/gpu_wheels.sh) carried:
#   1. continues the training run in .carry/ on CUDA (bf16) for TRAIN_S seconds (SIGTERM saves a
#      checkpoint), and brings back its newest state as parts plus the best EMA weights (fp16)
#      (TRAIN_S=0 skips it: no .carry/ state is needed then);
#   2. the GPU codec benchmark (bench/bench_gpu.py) and the corpus benchmark on CUDA.
# Everything it keeps lands in $OUT (at most 8 files come back).
#   OUT=bench/out/gpu DEVICE=cpu TRAIN_S=60 FILES=4 BENCH_ARGS="--seconds 1" bash bench/gpu_run.sh
set -u
OUT=${OUT:-bench/out/gpu}
DEVICE=${DEVICE:-cuda}
TRAIN_S=${TRAIN_S:-220}
FILES=${FILES:-200}
RUN=${RUN:-/tmp/gpu-run}
mkdir -p "$OUT" bench/out/gpu
exec > >(tee -a "$OUT/run.log") 2>&1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --find-links .whl --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site soundfile soxr cffi pycparser music2latent || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch, soundfile, soxr, music2latent; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
date +%s.%N | sed 's/^/start /'

# the benchmark corpus is written on the host's CPUs while the GPU trains
(cd bench && python3 bench_corpus.py --files "$FILES" --make-only --out out/gpu/corpus.json) > /tmp/make_corpus.log 2>&1 &
MAKE=$!

if [ "$TRAIN_S" != 0 ]; then  # TRAIN_S=0 (e.g. the run's schedule is done): benchmarks only
mkdir -p "$RUN/checkpoints" && cp .carry/config.json "$RUN/config.json"
python3 scripts/state_transfer.py unpack .carry/state "$RUN/checkpoints" || exit 1
echo "train $(date +%s.%N)"
timeout -s TERM "$TRAIN_S" python3 -m m2l train "$RUN/config.json" --data .carry/music --val .carry/val \
  --out "$RUN" --no-progress --device "$DEVICE"
echo "trained $(date +%s.%N)"
newest=$(ls "$RUN"/checkpoints/step-*.safetensors | tail -1)
python3 scripts/state_transfer.py pack "$newest" "$OUT/state"
best="$RUN/checkpoints/best.safetensors"; [ -f "$best" ] || best=$newest
python3 -m m2l export "$best" "$OUT/best-ema.safetensors" --fp16
cp "$RUN/log.jsonl" "$OUT/"
fi

wait $MAKE; cat /tmp/make_corpus.log
[ "${BENCH_S:-150}" = 0 ] || (cd bench && timeout "${BENCH_S:-150}" python3 bench_gpu.py --device "$DEVICE" --out out/gpu/gpu_codec.json ${BENCH_ARGS:-})
cp bench/out/gpu/gpu_codec.json "$OUT/" 2>/dev/null
(cd bench && timeout "${CORPUS_S:-150}" python3 bench_corpus.py --files "$FILES" --device "$DEVICE" \
  --cases ${CASES:-authors m2l-corpus network m2l-cli-start m2l-one-at-a-time m2l-corpus-bf16 authors-bf16} --out out/gpu/corpus.json)
cp bench/out/gpu/corpus.json "$OUT/" 2>/dev/null
echo "end $(date +%s.%N)"
