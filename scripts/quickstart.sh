#!/usr/bin/env bash
# Set up, then reconstruct an audio file: scripts/quickstart.sh [INPUT_AUDIO] [OUTPUT] [MODEL]
# MODEL defaults to the model shipped with m2l (offline). 'music2latent' fetches the authors'
# checkpoint from the model hub (non-commercial licence); any checkpoint path or preset works too.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh hub
mkdir -p quickstart
input=${1:-}
output=${2:-quickstart/reconstructed.wav}
model=${3:-default}
if [ -z "$input" ]; then
  input=quickstart/example.wav
  python - <<'PY'
import numpy as np, soundfile as sf
sr = 44100
t = np.arange(5 * sr) / sr
notes = [220.0, 277.18, 329.63, 440.0]
x = sum(0.15 * np.sin(2 * np.pi * f * t) * (np.sin(np.pi * (t * 2 + i / 4)) ** 2) for i, f in enumerate(notes))
sf.write("quickstart/example.wav", np.stack([x, np.roll(x, 441)], 1).astype(np.float32), sr)
PY
fi
m2l reconstruct "$input" -o "$output" --model "$model" --seed 0 --force
echo "wrote $output"
