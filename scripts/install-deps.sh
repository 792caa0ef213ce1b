#!/bin/sh
# Installs the Debian 12 packages crier builds, tests and runs with, only those that
# are missing; does nothing (and needs no root) when everything is already there.
set -eu

PKGS="build-essential pkg-config libuv1-dev libhiredis-dev libcurl4-openssl-dev libssl-dev
libcjson-dev libhttp-parser-dev libjwt-dev libcsv-dev uuid-dev libnghttp2-dev
redis-server redis-tools curl openssl tzdata python3 python3-pytest python3-redis python3-aiosmtpd
prometheus
clang libclang-rt-14-dev wrk gnuplot-nox
libsqlite3-dev libpq-dev postgresql"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
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
