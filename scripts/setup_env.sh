#!/usr/bin/env bash
# Source me: make .venv and install m2l with the extras given as $1 (e.g. "hub" or "test,oracle").
# torch==2.13.0 is pinned first so that nothing pulls a CUDA build. The stamp .venv/.m2l-installed
# (written last, after a successful install) tells scripts/quickstart.sh that the install is current.
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[$1]"
printf '%s\n' "$1" >.venv/.m2l-installed
