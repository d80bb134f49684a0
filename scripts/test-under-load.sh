#!/usr/bin/env bash
# The test suite with the machine kept busy: one CPU hog per core (normal priority) runs beside it for the
# whole run, as on a shared CI runner or a laptop doing other work. Every test must pass like this.
# Usage: scripts/test-under-load.sh            # `make test` (sets up .venv, runs the checks, then the suite)
#        scripts/test-under-load.sh --pytest   # the suite alone: $PY -m pytest -q -p no:cacheprovider tests
#        HOGS=3 scripts/test-under-load.sh     # more (or fewer) hogs than cores
#        scripts/test-under-load.sh --pytest tests/bus   # extra arguments go to pytest
#        DURATIONS=60 scripts/test-under-load.sh    # how many of the slowest tests to list at the end (default 25)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
HOGS=${HOGS:-$(nproc)}
mode=make
if [ "${1:-}" = "--pytest" ]; then
    mode=pytest
    shift
fi

hogs=()
stop_hogs() {
    for pid in "${hogs[@]}"; do
        kill "$pid" 2>/dev/null
    done
    wait "${hogs[@]}" 2>/dev/null
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$HOGS"); do
    sh -c 'while :; do :; done' &
    hogs+=($!)
done
echo "== $HOGS CPU hogs running (pids ${hogs[*]}); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# the slowest tests of this run, under this load, at the end of its log (make test's pytest reads it too)
export PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} --durations=${DURATIONS:-25}"

start=$(date +%s)
if [ "$mode" = make ]; then
    make test
else
    "$PY" -m pytest -q -p no:cacheprovider "${@:-tests}"
fi
rc=$?
took=$(( $(date +%s) - start ))
echo "== under load ($HOGS hogs): $([ $rc -eq 0 ] && echo PASSED || echo "FAILED (exit $rc)") in ${took} s;" \
     "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
