#!/usr/bin/env bash
# Writes a playbook of N no-op steps (`wait 0s`) to stdout, for timing the engine itself.
#
#   bench/gen-run-playbook.sh N chain   # each step needs the one before (the default)
#   bench/gen-run-playbook.sh N wide    # every step `needs: []`: all independent
set -euo pipefail
n=${1:-1000}
shape=${2:-chain}
case $shape in
  chain) extra='' ;;
  wide) extra=', needs: []' ;;
  *) echo "shape must be chain or wide, not $shape" >&2; exit 2 ;;
esac
printf 'version: 1\nname: bench\nsteps:\n'
for ((i = 0; i < n; i++)); do
  printf '  - { id: s%d, kind: wait, duration: 0s%s }\n' "$i" "$extra"
done
