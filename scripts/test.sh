#!/usr/bin/env bash
# Set up a virtual environment from nothing and run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh test,oracle
# The note renderer's tests: tinysoundfont's metadata asks for pyaudio (live playback, unused).
python -m pip install -q --no-deps tinysoundfont || echo "test.sh: no tinysoundfont; its tests are skipped" >&2
# The eval report's browser test drives headless Chromium (it is skipped without it): install it
# when running as root and it is missing; best effort, the tests run either way.
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
        || echo "test.sh: could not install chromium; the browser test will be skipped" >&2
fi
ruff check src tests bench
ruff format --check src tests bench
pytest
