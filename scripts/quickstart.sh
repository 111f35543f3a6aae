#!/usr/bin/env bash
# Set up, then reconstruct an audio file: scripts/quickstart.sh [INPUT_AUDIO] [OUTPUT] [MODEL]
# MODEL defaults to the authors' checkpoint (fetched from the model hub); offline, pass a
# checkpoint path or a preset name (a preset alone is untrained: a smoke test only).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh hub
input=${1:-}
output=${2:-reconstructed.wav}
model=${3:-music2latent}
if [ -z "$input" ]; then
  input=example.wav
  python - <<'PY'
import numpy as np, soundfile as sf
sr = 44100
t = np.arange(5 * sr) / sr
notes = [220.0, 277.18, 329.63, 440.0]
x = sum(0.15 * np.sin(2 * np.pi * f * t) * (np.sin(np.pi * (t * 2 + i / 4)) ** 2) for i, f in enumerate(notes))
sf.write("example.wav", np.stack([x, np.roll(x, 441)], 1).astype(np.float32), sr)
PY
fi
if [ "$model" = music2latent ] && ! python -c "import m2l.loading as l; l.fetch_authors_checkpoint()" 2>/dev/null; then
  echo "quickstart: the model hub is unreachable; using the untrained m2l-v1-tiny preset instead" >&2
  model=m2l-v1-tiny
fi
m2l reconstruct "$input" -o "$output" --model "$model" --seed 0 --force
echo "wrote $output"
