#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels bench/gpu_run.sh installs on the device machine, which
# reaches no package index: soundfile, soxr, cffi, pycparser and the authors' music2latent (the
# benchmarks' oracle), for CPython 3.10-3.13 on x86-64 Linux; gpu_run.sh picks the ones that fit.
#   bash bench/gpu_wheels.sh && du -sh .whl   # then carry [".whl"] with the device's run
set -euo pipefail
cd "$(dirname "$0")/.."
for version in 3.10 3.11 3.12 3.13; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .whl soundfile soxr cffi pycparser music2latent
done
