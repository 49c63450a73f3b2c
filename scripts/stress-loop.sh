#!/usr/bin/env bash
# Runs the replay and concurrency tests N times in a row (default 50) while the rest of
# the e2e suite loops beside them as load, and reports passes and failures. The e2e test
# binary is copied aside first, so rebuilding during the run cannot change it.
#   scripts/stress-loop.sh [N]
# Needs PostgreSQL (COOPSYNC_REQUIRE_POSTGRES=1 is set). Takes ~10 s per round here.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-50}"
cargo test -p coopsync-tests --test e2e --no-run 2>/dev/null
bin=$(ls -t target/debug/deps/e2e-* | grep -v '\.d$' | head -n 1)
work=$(mktemp -d)
cp "$bin" "$work/e2e"
export COOPSYNC_REQUIRE_POSTGRES=1
cd tests
( while [ ! -f "$work/stop" ]; do "$work/e2e" --skip replay --skip convergence >/dev/null 2>&1 || true; done ) &
load=$!
pass=0; fail=0
for i in $(seq "$rounds"); do
    if "$work/e2e" replay convergence >"$work/round.log" 2>&1; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); cp "$work/round.log" "$work/failed-$i.log"
    fi
    echo "round $i: $pass passed, $fail failed"
done
touch "$work/stop"; wait "$load" || true
echo "logs of failed rounds (if any): $work"
[ "$fail" -eq 0 ]
