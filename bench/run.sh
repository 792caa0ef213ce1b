#!/bin/sh
# `make bench`: checks the benchmark's tools (wrk, gnuplot, the BullMQ peer's
# node modules), then runs bench/bench.py, which starts its own redis-server and
# crier-sim, measures crierd beside the baselines and writes bench/results/.
#   BUILD=build sh bench/run.sh
#   BUILD=build sh bench/run.sh sentinel   (only the Sentinel round)
#   BUILD=build python3 bench/bench.py whatsapp   (only the WhatsApp scenarios)
# BENCH_RUNS, BENCH_THROUGHPUT_RUNS, BENCH_SCALE, BENCH_PEER, BENCH_PEER_ROUNDS,
# BENCH_PEER_SUBSCRIBERS, BENCH_WA_SUBSCRIBERS, BENCH_WA_ROUNDS: see bench/bench.py. docs/benchmark.md explains the method.

BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
T0=$(date +%s)
cd "$(dirname "$0")/.." || exit 2

for bin in crierd crier-sim http_bare crier-seed; do
    if [ ! -x "$BUILD/$bin" ]; then
        echo "bench: $BUILD/$bin is missing: run make bench (or make BUILD=$BUILD $BUILD/$bin)" >&2
        exit 2
    fi
done

# wrk, gnuplot and valgrind: the package step installs the first two; try once
# more if missing, and carry on without them (wrk's figure, the chart or the
# instruction counts are then left out).
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing \
        >/dev/null 2>&1 || echo "bench: could not install$missing; going on without" >&2
fi

# The BullMQ peer's modules, exactly as locked in bench/peer/package-lock.json.
if [ "${BENCH_PEER:-1}" != 0 ]; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "bench: node/npm not found: skipping the BullMQ peer" >&2
        BENCH_PEER=0
    elif [ -f bench/peer/node_modules/.package-lock.json ] &&
         cmp -s bench/peer/package-lock.json bench/peer/.installed-lock 2>/dev/null; then
        :
    elif (cd bench/peer && timeout 300 npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
         (cd bench/peer && timeout 300 npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
        # npm ci refuses a lock file without every platform's optional packages,
        # which some registry mirrors leave out; npm install then follows the lock.
        cp bench/peer/package-lock.json bench/peer/.installed-lock
    else
        echo "bench: npm ci failed (is the npm registry reachable?): skipping the BullMQ peer" >&2
        BENCH_PEER=0
    fi
fi
export BENCH_PEER BUILD

"$PYTHON" bench/bench.py "$@" || exit $?
# crier-audit's figures (bench/audit_bench.py, into audit.json beside
# latest.json): BENCH_AUDIT=0 skips them
if [ "${BENCH_AUDIT:-1}" != 0 ]; then
    "$PYTHON" bench/audit_bench.py || echo "bench: crier-audit's figures failed" >&2
fi
# survey answers applied per second (bench/survey_bench.py, into survey.json):
# BENCH_SURVEY=0 skips them
if [ "${BENCH_SURVEY:-1}" != 0 ]; then
    "$PYTHON" bench/survey_bench.py || echo "bench: the survey figures failed" >&2
fi
# escalation's cost to the first step and the step's own rate
# (bench/escalate_bench.py, into escalate.json): BENCH_ESCALATE=0 skips them
if [ "${BENCH_ESCALATE:-1}" != 0 ]; then
    "$PYTHON" bench/escalate_bench.py || echo "bench: the escalation figures failed" >&2
fi
echo "bench: make bench took $(( $(date +%s) - T0 ))s in all"
