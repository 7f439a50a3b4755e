#!/usr/bin/env bash
# Writes a playbook with N steps (default 1000) to stdout: a mix of kinds, templates that read
# upstream outputs, fan-out and fan-in, so validation does all of its work.
set -euo pipefail
n=${1:-1000}
cat <<HEADER
version: 1
name: generated-$n
objectives: { rto: 30m, rpo: 1h }
vars: { store: "s3://bench/backups", environment: bench }
secrets: [DATABASE_URL, RESTORE_URL, REDIS_URL]
steps:
  - id: s0
    kind: assess
    store: "{{ vars.store }}"
HEADER
for ((i = 1; i < n; i++)); do
  p=$((i - 1))
  case $((i % 4)) in
    0) printf '  - id: s%d\n    kind: assess\n    store: "{{ vars.store }}/{{ vars.environment }}"\n    needs: [s%d]\n' "$i" "$p" ;;
    1) printf '  - id: s%d\n    kind: command\n    run: [echo, "{{ run.id }}", "{{ steps.s%d.outputs.backup }}"]\n    timeout: 5m\n    retry: { attempts: 3, backoff: 2s }\n' "$i" "$p" ;;
    2) printf '  - id: s%d\n    kind: manual\n    instructions: "Check {{ steps.s%d.outputs.exit_code }} at {{ now() | date(\\"%%H:%%M\\") }}"\n    needs: [s%d]\n' "$i" "$p" "$p" ;;
    3) printf '  - id: s%d\n    kind: smoke-test\n    database: "{{ secrets.RESTORE_URL }}"\n    needs: [s%d, s%d]\n    checks:\n      - { sql: "select count(*) from t%d", expect: ">= 1" }\n' "$i" "$p" $((i > 3 ? i - 3 : 0)) "$i" ;;
  esac
done
