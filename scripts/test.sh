#!/usr/bin/env bash
# Set up a virtual environment from nothing and run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh test,oracle
ruff check src tests bench
pytest
