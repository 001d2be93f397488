#!/usr/bin/env bash
# The whole pytest suite in two phases, so the deployment test's waiting overlaps other work:
#
#   1. tests/deploy (a real Docker engine: build, up, kill -9, down/up; ~6-7 min, mostly waiting
#      on containers that run their own PostgreSQL and Redis) in the background, next to every
#      test not marked slow (unit, integration, SQLite + PostgreSQL + Redis/Celery);
#   2. then the slow suites alone (chaos, which restarts the machine's PostgreSQL and Redis,
#      benchmarks, latency, fuzz), so nothing competes with their timing.
#
# Every test runs once; the exit code is non-zero if any phase failed. The deployment test's
# output is printed after phase 1 (its log: $DEPLOY_LOG).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DEPLOY_LOG=${DEPLOY_LOG:-.deploy-test.log}

started=$(date +%s)
"$BIN/pytest" -q -p no:randomly -rs tests/deploy >"$DEPLOY_LOG" 2>&1 &
deploy_pid=$!
"$BIN/pytest" -q -m "not slow" --ignore=tests/deploy
fast=$?
wait "$deploy_pid"
deploy=$?
echo "---- tests/deploy (ran next to phase 1) ----"
cat "$DEPLOY_LOG"
echo "---- phase 1 done in $(( $(date +%s) - started ))s: fast=$fast deploy=$deploy ----"
"$BIN/pytest" -q -m slow --ignore=tests/deploy
slow=$?
echo "---- suite done in $(( $(date +%s) - started ))s: fast=$fast deploy=$deploy slow=$slow ----"
# pytest exit 5 = no tests collected (e.g. a filtered run): not a failure of the suite.
for rc in "$fast" "$deploy" "$slow"; do
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
done
exit 0
