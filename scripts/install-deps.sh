#!/bin/sh
# Installs the Debian 12 packages crier needs for one purpose, only those that
# are missing; does nothing (and needs no root) when everything is already there.
#   sh scripts/install-deps.sh run     build crier and run it (make run, make install)
#   sh scripts/install-deps.sh test    run + what the test suite needs (make test)
#   sh scripts/install-deps.sh bench   run + what the benchmark needs (make bench)
# With no argument: run. One list per purpose below; a package goes in the first
# purpose that needs it.
set -eu

# Building crierd, crier-sim and crierctl, and running the demo (make run).
RUN_PKGS="build-essential pkg-config libuv1-dev libhiredis-dev libcurl4-openssl-dev
libssl-dev libcjson-dev libhttp-parser-dev libjwt-dev libcsv-dev uuid-dev libnghttp2-dev
libsystemd-dev libsqlite3-dev libpq-dev
redis-server redis-sentinel redis-tools curl openssl tzdata python3 python3-redis"

# The unit and integration tests, and fuzzing them (make test).
TEST_PKGS="python3-pytest python3-jsonschema python3-aiosmtpd prometheus clang libclang-rt-14-dev
nghttp2-server
postgresql chromium chromium-driver python3-selenium"

# The benchmark's load generator and charts (make bench).
BENCH_PKGS="wrk gnuplot-nox valgrind"

purpose=${1:-run}
case "$purpose" in
run) PKGS="$RUN_PKGS" ;;
test) PKGS="$RUN_PKGS $TEST_PKGS" ;;
bench) PKGS="$RUN_PKGS $BENCH_PKGS" ;;
all) PKGS="$RUN_PKGS $TEST_PKGS $BENCH_PKGS" ;;
*)
    echo "usage: install-deps.sh [run|test|bench|all]" >&2
    exit 2
    ;;
esac

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

echo "install-deps ($purpose): installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: missing packages:$missing; run as root or install them" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
