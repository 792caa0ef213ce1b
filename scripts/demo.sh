#!/bin/sh
# `make run`: a demo broadcast on this machine only (private redis-server and
# crier-sim on free loopback ports, crierd from $BUILD), driven by demo.py.
cd "$(dirname "$0")/.." || exit 2
CRIER_BUILD=${BUILD:-build}
export CRIER_BUILD
exec "${PYTHON:-/usr/bin/python3}" scripts/demo.py "$@"
