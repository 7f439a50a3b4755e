#!/usr/bin/env bash
# Engine overhead per step (issue 3): `drillbook run` of N no-op steps (`wait 0s`), each one's
# start and finish appended to the journal and fsync'd before the next step. Times whole
# processes with hyperfine, a fresh state directory per run, and derives
#
#   per-step overhead = (time(N-step playbook) - time(1-step playbook)) / (N - 1)
#
# for a chain (each step needs the one before) and a wide playbook (every step `needs: []`,
# default --max-parallel). Also measures the fsync floor of the same disk: 2 fdatasync'd appends
# per step, the least any engine with this journal can do. Goal: under 2 ms per step.
#
#   bash bench/engine.sh [STEPS] [RUNS]
#   BENCH_DIR=/dev/shm bash bench/engine.sh    # state on another filesystem (default: target/)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
runs=${2:-10}
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
cargo build --release --quiet
bin=$PWD/target/release/drillbook
# The state goes where a real run's would: next to the project (./.drillbook), same disk.
base=${BENCH_DIR:-$PWD/target}
mkdir -p "$base"
work=$(mktemp -d "$base/bench-engine.XXXXXX")
trap 'rm -rf "$work"' EXIT

bench/gen-run-playbook.sh 1 chain > "$work/one.yaml"
bench/gen-run-playbook.sh "$steps" chain > "$work/chain.yaml"
bench/gen-run-playbook.sh "$steps" wide > "$work/wide.yaml"

echo "machine: $(nproc) CPUs, $(uname -sr)"
echo "state:   $work"
df -hT "$work" | sed 's/^/         /'

# Sanity: each playbook really runs, and its journal holds run_started, a start and a finish
# per step, and run_finished, all intact.
for shape in one chain wide; do
  rm -rf "$work/state"
  "$bin" run --state-dir "$work/state" "$work/$shape.yaml" >/dev/null 2>&1 \
    || { echo "FAIL: $shape run exited $?"; exit 1; }
  python3 - "$work/state" "$shape" <<'PY'
import glob, json, sys
state, shape = sys.argv[1], sys.argv[2]
[journal] = glob.glob(f"{state}/runs/*/journal.jsonl")
records = [json.loads(line) for line in open(journal)]
kinds = [r["event"] for r in records]
steps = kinds.count("step_started")
ok = (kinds[0], kinds[-1]) == ("run_started", "run_finished") \
    and steps == kinds.count("step_finished") and len(kinds) == 2 * steps + 2 \
    and all(r.get("status", "succeeded") == "succeeded" for r in records)
print(f"journal: {shape:5} {len(records):5} records, {steps} steps {'ok' if ok else 'WRONG'}")
sys.exit(0 if ok else 1)
PY
done

# The fsync floor: appends of a journal-sized line, each followed by fdatasync, to a fresh file
# in the same directory; `trials` times, median. Printed as ms per step (2 appends).
floor() {
  python3 - "$work" "$steps" <<'PY'
import os, statistics, sys, time
work, steps = sys.argv[1], int(sys.argv[2])
line = b'{"seq":455,"at":"2026-11-24T16:28:27.659787123Z","event":"step_finished","step":"s227","attempt":1,"status":"succeeded"}\n'
per_step = []
for trial in range(7):
    path = os.path.join(work, f"floor-{trial}.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    start = time.perf_counter()
    for _ in range(2 * steps):
        os.write(fd, line)
        os.fdatasync(fd)
    per_step.append((time.perf_counter() - start) * 1e3 / steps)
    os.close(fd)
    os.unlink(path)
print(f"{statistics.median(per_step):.4f} {min(per_step):.4f}")
PY
}
read -r floor_before floor_before_min < <(floor)
echo "fsync floor (before): $floor_before ms/step median, $floor_before_min min ($((2 * steps)) fdatasync'd appends, 7 trials)"

hyperfine --warmup 1 --runs "$runs" --style basic --export-json "$work/engine.json" \
  --prepare "rm -rf $work/state" \
  -n "1 step" "$bin run --state-dir $work/state $work/one.yaml" \
  -n "$steps chain" "$bin run --state-dir $work/state $work/chain.yaml" \
  -n "$steps wide" "$bin run --state-dir $work/state $work/wide.yaml"

read -r floor_after floor_after_min < <(floor)
echo "fsync floor (after):  $floor_after ms/step median, $floor_after_min min"

python3 - "$work/engine.json" "$steps" "$floor_before" "$floor_after" <<'PY'
import json, statistics, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
steps = int(sys.argv[2])
floor = statistics.mean([float(sys.argv[3]), float(sys.argv[4])])
one = results["1 step"]
print(f"\nper-step overhead = (time({steps} steps) - time(1 step)) / {steps - 1}; "
      f"fsync floor {floor:.3f} ms/step (mean of before and after); goal < 2 ms")
print(f"{'playbook':<12} {'median s':>9} {'min s':>8} {'ms/step (median)':>17} {'ms/step (min)':>14} {'x floor':>8} {'goal':>5}")
for name in ("1 step", f"{steps} chain", f"{steps} wide"):
    r = results[name]
    if name == "1 step":
        print(f"{name:<12} {r['median']:>9.3f} {r['min']:>8.3f}")
        continue
    med = (r["median"] - one["median"]) * 1e3 / (steps - 1)
    low = (r["min"] - one["min"]) * 1e3 / (steps - 1)
    print(f"{name:<12} {r['median']:>9.3f} {r['min']:>8.3f} {med:>17.3f} {low:>14.3f} {med / floor:>8.2f} {'met' if med < 2 else 'MISSED':>5}")
PY
