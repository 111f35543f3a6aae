#!/usr/bin/env bash
# Set up, then reconstruct an audio file: scripts/quickstart.sh [INPUT_AUDIO] [OUTPUT] [MODEL]
# MODEL defaults to the model shipped with m2l (offline). 'music2latent' fetches the authors'
# checkpoint from the model hub (non-commercial licence); any checkpoint path or preset works too.
# Paths are taken from the folder it is run in. The install is skipped while it is current: .venv
# holds m2l from this checkout and pyproject.toml is not newer than .venv/.m2l-installed.
set -euo pipefail
caller=$PWD
repo=$(cd "$(dirname "$0")/.." && pwd)
from_caller() {  # a path given from the caller's folder, made absolute before the cd below
  case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller/$1" ;; esac
}
input=${1:+$(from_caller "$1")}
model=${3:-default}
if [ -e "$model" ]; then  # a checkpoint or run folder (else a name: default, a preset, music2latent)
  model=$(from_caller "$model")
fi
force=()
if [ -n "${2:-}" ]; then
  output=$(from_caller "$2")
  if [ -f "$output" ] && ! { [ -n "$input" ] && [ "$input" -ef "$output" ]; }; then
    # An output the user names is never replaced: a new user does not expect a quickstart to
    # delete a file of theirs, and an earlier output is easy to delete or name anew.
    echo "quickstart: error: $2 already exists; delete it or name another output" >&2
    exit 1
  fi
else
  # The quickstart's own scratch file: a re-run replaces it.
  output=$repo/quickstart/reconstructed.wav
  force=(--force)
fi
# Never overwrite the input, whatever its spelling (-ef: the same file, through links too).
if [ -n "$input" ] && [ "$input" -ef "$output" ]; then
  echo "quickstart: error: ${2:-$output} is the input file; name another output" >&2
  exit 1
fi
cd "$repo"
stamp=.venv/.m2l-installed
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ] \
  && .venv/bin/python -c 'import os, sys, m2l
sys.exit(os.path.realpath(os.path.dirname(m2l.__file__)) != os.path.realpath("src/m2l"))' 2>/dev/null; then
  . .venv/bin/activate
else
  . scripts/setup_env.sh hub
fi
mkdir -p quickstart
if [ -z "$input" ]; then
  input=$repo/quickstart/example.wav
  python - <<'PY'
import numpy as np, soundfile as sf
sr = 44100
t = np.arange(5 * sr) / sr
notes = [220.0, 277.18, 329.63, 440.0]
x = sum(0.15 * np.sin(2 * np.pi * f * t) * (np.sin(np.pi * (t * 2 + i / 4)) ** 2) for i, f in enumerate(notes))
sf.write("quickstart/example.wav", np.stack([x, np.roll(x, 441)], 1).astype(np.float32), sr)
PY
fi
m2l reconstruct "$input" -o "$output" --model "$model" --seed 0 ${force[@]+"${force[@]}"}
echo "wrote $output"
echo "to run m2l in a new shell: . $repo/.venv/bin/activate (or call $repo/.venv/bin/m2l)"
