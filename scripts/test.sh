#!/usr/bin/env bash
# Set up a virtual environment from nothing and run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch==2.13.0 is pinned first so that nothing pulls a CUDA build; the oracle extra installs the
# authors' package for the parity tests.
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[test,oracle]'
ruff check src tests bench
pytest
