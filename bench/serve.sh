#!/usr/bin/env bash
# `drillbook serve` with many runs in the state (issue 19): how long each page takes to answer
# with RUNS runs (default 1,000) of five playbooks, some waiting at a gate. The runs are real:
# `drillbook run` of each playbook, round robin, into one state directory. The server runs
# release-built; each page is fetched signed in with curl, TRIALS times (default 20), and the
# median and the slowest are printed. Goal: every page under 200 ms.
#
#   bash bench/serve.sh [RUNS] [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-1000}
trials=${2:-20}
cargo build --release --quiet
bin=$PWD/target/release/drillbook
work=$(mktemp -d "$PWD/target/bench-serve.XXXXXX")
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"

for n in 1 2 3 4; do
  cat > "p$n.yaml" <<EOF
version: 1
name: drill-$n
objectives: { rto: 30m, rpo: 1h }
steps:
  - { id: assess, kind: command, run: ["true"] }
  - { id: restore, kind: command, needs: [assess], run: ["true"] }
  - { id: smoke, kind: command, needs: [restore], run: ["true"], clock: stop }
  - { id: notify, kind: command, needs: [smoke], run: ["true"] }
EOF
done
cat > p5.yaml <<'EOF'
version: 1
name: gated
steps:
  - { id: prepare, kind: command, run: ["true"] }
  - id: promote
    kind: command
    needs: [prepare]
    run: ["true"]
    approval: { prompt: "Promote?", approvers: 2 }
EOF

echo "machine: $(nproc) CPUs, $(uname -sr)"
started=$(date +%s)
for i in $(seq "$runs"); do
  p=$(( (i - 1) % 5 + 1 ))
  "$bin" run "p$p.yaml" >/dev/null 2>&1 || true
done
echo "state:   $(ls .drillbook/runs | wc -l) runs made in $(( $(date +%s) - started )) s, $(du -sh .drillbook | cut -f1)"

echo "bench-serve-password" | "$bin" user add bench --role approver 2>/dev/null
port=$(free_port)
"$bin" serve --listen "127.0.0.1:$port" 2>serve.log &
server=$!
wait_for_port "$port"
base=http://127.0.0.1:$port
curl -s -o /dev/null -c cookies -d name=bench -d password=bench-serve-password "$base/login"
runs_made=(.drillbook/runs/*)
run=$(basename "${runs_made[-1]}")
waiting=
for journal in .drillbook/runs/*/journal.jsonl; do
  if grep -q '"exit_code":4' "$journal"; then waiting=$(basename "$(dirname "$journal")"); break; fi
done

printf '%-34s %8s %8s %8s\n' page median slowest bytes
for page in /runs "/runs?status=waiting_approval" "/runs/$run" "/runs/$waiting" /approvals /health \
    "/runs/$run/report/html" "/runs/$run/live"; do
  times=()
  for _ in $(seq "$trials"); do
    out=$(curl -s -o page.out -b cookies -w '%{http_code} %{time_total}' "$base$page")
    code=${out%% *}
    [ "$code" = 200 ] || { echo "FAIL: $page answered $code"; exit 1; }
    times+=("${out#* }")
  done
  printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys, statistics
values = [float(line) * 1000 for line in sys.stdin]
page, size = sys.argv[1], sys.argv[2]
print(f"{page:34} {statistics.median(values):6.1f}ms {max(values):6.1f}ms {size:>8}")
' "$page" "$(wc -c < page.out)"
done
