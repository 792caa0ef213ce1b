#!/bin/sh
# The whole test suite: the unit test runner, then the integration tests (pytest,
# real redis-server, crier-sim and crierd). Ends with exactly one line
# "N passed, N failed" (both parts together) and fails if anything failed or
# if either part did not run.
#   BUILD=build PYTHON=/usr/bin/python3 sh tests/run.sh
# PYTEST_ADDOPTS is passed through to pytest (e.g. PYTEST_ADDOPTS="-k broadcast").

BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
# Sanitizer builds: stop at the first report, with a stack trace (the
# integration tests also fail a test whose processes made any report: conftest.py).
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export UBSAN_OPTIONS
cd "$(dirname "$0")/.." || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/crier-run.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

passed=0
failed=0
problems=""

note() {
    problems="$problems
run.sh: $1"
}

# ---- unit tests ----
unit_ran=0
if [ -x "$BUILD/crier-unit" ]; then
    { "$BUILD/crier-unit" 2>&1; echo $? >"$tmp/unit.rc"; } | tee "$tmp/unit.out"
    unit_rc=$(cat "$tmp/unit.rc" 2>/dev/null || echo 99)
    line=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed$' "$tmp/unit.out" | tail -n 1)
    if [ -n "$line" ]; then
        unit_ran=1
        up=$(echo "$line" | sed -E 's/^unit: ([0-9]+) passed.*/\1/')
        uf=$(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
        passed=$((passed + up))
        failed=$((failed + uf))
        if [ "$unit_rc" -ne 0 ] && [ "$uf" -eq 0 ]; then
            failed=$((failed + 1))
            note "crier-unit exited with $unit_rc although no test failed"
        fi
    else
        note "crier-unit exited with $unit_rc without its summary line (crashed?)"
    fi
else
    note "$BUILD/crier-unit is missing: build it first (make)"
fi

# ---- integration tests ----
integ_ran=0
{
    CRIER_BUILD=$BUILD "$PYTHON" -m pytest -q -p no:cacheprovider tests/integration 2>&1
    echo $? >"$tmp/integ.rc"
} | tee "$tmp/integ.out"
integ_rc=$(cat "$tmp/integ.rc" 2>/dev/null || echo 99)
# pytest's last summary line, e.g. "12 passed, 1 failed, 2 errors in 80.12s".
summary=$(grep -E '[0-9]+ (passed|failed|errors?|skipped|xfailed|xpassed)' "$tmp/integ.out" \
    | grep -E ' in [0-9.]+s' | tail -n 1)
count() {
    n=$(echo "$summary" | grep -oE "[0-9]+ $1" | head -n 1 | cut -d' ' -f1)
    echo "${n:-0}"
}
if [ -n "$summary" ]; then
    ip=$(count passed)
    if_=$(count failed)
    ie=$(count 'errors?')
    ixp=$(count xpassed)
    total_run=$((ip + if_ + ie))
    if [ "$total_run" -gt 0 ]; then
        integ_ran=1
    fi
    passed=$((passed + ip))
    failed=$((failed + if_ + ie + ixp))
    if [ "$integ_rc" -ne 0 ] && [ $((if_ + ie + ixp)) -eq 0 ]; then
        failed=$((failed + 1))
        note "pytest exited with $integ_rc although no test failed"
    fi
fi
if [ "$integ_ran" -eq 0 ]; then
    note "integration tests did not run (pytest exit $integ_rc)"
fi

[ -n "$problems" ] && echo "$problems" | sed '/^$/d' >&2
echo "$passed passed, $failed failed"
if [ "$failed" -ne 0 ] || [ "$unit_ran" -eq 0 ] || [ "$integ_ran" -eq 0 ]; then
    exit 1
fi
exit 0
