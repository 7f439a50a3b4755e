#!/usr/bin/env bash
# The fault suite in full (issue 15): the S3 fault proxy's tests (tests/faults_s3.rs) over
# SEEDS seeds per fault rate (5 % and 15 %, default 200); the kill-and-resume tests
# (tests/faults_kill.rs, and tests/faults_failover.rs in the failover lab) at KILLS points per
# kind of kill (drillbook alone, its process tree; default 20); the system faults
# (tests/faults_systems.rs) and the network partition (tests/failover_partition.rs). Prints
# each test's figures (runs, successes, clean failures, anything wrong, faults injected per
# kind; kills, resumes, survivors) and a summary. Needs what `cargo test` needs (PostgreSQL,
# Redis, root for the tmpfs and the network namespace).
#
#   bash bench/faults.sh [SEEDS] [KILLS]
set -uo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-200}
kills=${2:-20}
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0
log=${FAULTS_LOG:-$(mktemp)}
[ -n "${FAULTS_LOG:-}" ] || trap 'rm -f "$log"' EXIT
cargo test --test faults_s3 --test faults_kill --test faults_failover --test faults_systems --test failover_partition --no-run 2>&1 | tail -1
started=$(date +%s)
failed=0
DRILLBOOK_FAULT_SEEDS=$seeds DRILLBOOK_KILL_POINTS=$kills \
  cargo test --no-fail-fast --test faults_s3 --test faults_kill --test faults_failover --test faults_systems --test failover_partition -- \
  --nocapture --test-threads=2 >"$log" 2>&1 || failed=1
echo "fault suite: $seeds seeds per rate, $kills kill points per kind, $(( $(date +%s) - started )) s"
grep -E "^(FAULTS|KILLS) |^(PostgreSQL killed|Redis down|full disk: exit|SKIPPED)" "$log"
grep -E "^test .* \.\.\. (ok|FAILED|ignored)|^test result" "$log"
if [ "$failed" = 1 ]; then
  echo "fault suite: FAILURES" >&2
  grep -A40 -E "^---- .* stdout ----" "$log" | head -200 >&2
  exit 1
fi
