#!/usr/bin/env bash
# Backup and restore of a database against PostgreSQL's own tools (issues: database
# benchmarks, PITR). Each scale gets its own dataset, kept between runs as
# drillbook_bench_DATA_sSCALE: `DATA=pgbench` (the default, `pgbench -i -s SCALE`, whose rows
# compress 50:1) or `DATA=realistic` (../shared/bench-data/realistic.sql, `-v scale=SCALE`:
# prose-like text, jsonb, indexes, compressing about 3:1 like real data). Four comparisons,
# each measured side by side by hyperfine, in rounds of 2 runs whose command order alternates
# (the machine is shared and drifts):
#
#   (a) drillbook backup into S3 (s3s-fs on loopback)  vs  pg_dump -Fc -Z1 > /dev/null    <= 1.05x
#   (b) the same drillbook backup (its default: custom format, zstd outside pg_dump)
#                                   vs  pg_dump --format=custom (default compression) -f FILE
#                                   drillbook >= 2x faster, artifact no larger (<= 1.00x)
#   (c) drillbook restore from S3 (jobs: 2)  vs  pg_restore -j2 from a local file of the
#       procedure's dump (pg_dump --format=custom),
#       both --clean --if-exists --no-owner into a freshly created database    <= 1.05x
#   (d) drillbook's peak RSS during backup and restore (/usr/bin/time -v), < 64 MiB, flat
#
# Ratios are of hyperfine medians. The goals are stated for scale 50 (about 750 MB); smaller
# scales show how the figures move with size.
#
#   bash bench/database.sh [SCALE...]            # default: 10 50
#   DATA=realistic bash bench/database.sh 100    # realistic.sql at scale 100 (about 150 MB)
#   RUNS=5 bash bench/database.sh 50             # runs per command (default 10, plus 1 warm-up)
#   BENCH_DIR=/dev/shm bash bench/database.sh    # work files elsewhere (default: target/)
set -euo pipefail
cd "$(dirname "$0")/.."
scales=${*:-10 50}
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
source bench/lib.sh
cargo build --release --quiet

pg=(-h 127.0.0.1 -p 5432 -U postgres)
pg_url=postgres://postgres@127.0.0.1:5432
base=${BENCH_DIR:-$PWD/target}
mkdir -p "$base"
work=$(mktemp -d "$base/bench-database.XXXXXX")
restore_db=drillbook_bench_restore_$$
s3_pid=
cleanup() {
  [ -n "$s3_pid" ] && kill "$s3_pid" 2>/dev/null
  dropdb "${pg[@]}" --if-exists "$restore_db" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A private copy: others rebuilding target/release mid-benchmark cannot change what is measured.
bin=$work/drillbook
cp target/release/drillbook "$bin"
backup_playbook=$PWD/bench/database-backup.yaml
restore_playbook=$PWD/bench/database-restore.yaml

fresh_target="dropdb ${pg[*]} --if-exists $restore_db && createdb ${pg[*]} $restore_db && psql ${pg[*]} -qc CHECKPOINT postgres"

# The S3 server, on a free port, over a directory on the same disk.
mkdir -p "$work/s3/bench"
start_s3 "$work/s3" "$work/s3s-fs.log"

echo "machine:    $(nproc) CPUs, $(uname -sr), $(free -g | awk '/^Mem:/ {print $2}') GB RAM"
echo "drillbook:  $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src'), $(sha256sum "$bin" | cut -c1-12)"
echo "postgres:   $(psql "${pg[@]}" -Atc 'SHOW server_version' postgres), $(pg_dump --version)"
echo "            shared_buffers $(psql "${pg[@]}" -Atc 'SHOW shared_buffers' postgres), max_wal_size $(psql "${pg[@]}" -Atc 'SHOW max_wal_size' postgres)"
echo "work:       $work"
df -hT "$work" | sed 's/^/            /'

data=${DATA:-pgbench}
realistic=$PWD/../shared/bench-data/realistic.sql
case $data in
  pgbench) count_table=pgbench_accounts ;;
  realistic) count_table=users; [ -f "$realistic" ] || { echo "no $realistic"; exit 1; } ;;
  *) echo "DATA is pgbench or realistic, not $data"; exit 2 ;;
esac

for scale in $scales; do
  if [ "$data" = pgbench ]; then db=drillbook_bench_s$scale; else db=drillbook_bench_${data}_s$scale; fi
  store=s3://bench/s$scale
  runs=${RUNS:-10}
  out=$work/s$scale
  mkdir -p "$out"
  echo
  echo "=== scale $scale ($db, $runs runs + 1 warm-up) ==="
  if [ "$data" = pgbench ] && [ "$(psql "${pg[@]}" -Atc 'SELECT count(*) FROM pgbench_branches' "$db" 2>/dev/null)" != "$scale" ]; then
    echo "creating $db with pgbench -i -s $scale"
    dropdb "${pg[@]}" --if-exists "$db"
    createdb "${pg[@]}" "$db"
    pgbench -i -q -s "$scale" "${pg[@]}" "$db"
  fi
  if [ "$data" = realistic ] && [ "$(psql "${pg[@]}" -Atc 'SELECT count(*) FROM users' "$db" 2>/dev/null)" != "$((scale * 1000))" ]; then
    echo "creating $db with realistic.sql -v scale=$scale"
    dropdb "${pg[@]}" --if-exists "$db"
    createdb "${pg[@]}" "$db"
    psql "${pg[@]}" -q -v scale="$scale" -d "$db" -f "$realistic" >/dev/null
    psql "${pg[@]}" -qc "VACUUM ANALYZE" "$db"
  fi
  echo "database:   $(psql "${pg[@]}" -Atc "SELECT pg_size_pretty(pg_database_size('$db'))" postgres)"
  rows=$(psql "${pg[@]}" -Atc "SELECT count(*) FROM $count_table" "$db")

  backup="DATABASE_URL=$pg_url/$db $bin run --state-dir $out/state --run-id backup --var store=$store $backup_playbook"
  restore_cmd() { echo "RESTORE_URL=$pg_url/$restore_db $bin run --state-dir $out/state --run-id restore --var store=$store --var key=$1 $restore_playbook"; }

  # Sanity: the backup succeeds, its object is where the manifest says, and its key is known.
  rm -rf "$out/state"
  sh -c "$backup" >"$out/backup.out" 2>&1 || { echo "FAIL: drillbook backup exited $?"; cat "$out/backup.out"; exit 1; }
  "$bin" report backup --state-dir "$out/state" --format json >"$out/backup-report.json"
  read -r key size < <(python3 -c 'import json, sys; o = json.load(open(sys.argv[1]))["steps"][0]["outputs"]; print(o["key"], o["size"])' "$out/backup-report.json")
  object=$work/s3/bench/s$scale/$key
  [ "$(stat -c %s "$object")" = "$size" ] || { echo "FAIL: $object is not $size bytes"; exit 1; }
  # The baseline restores the procedure's own dump (pg_dump --format=custom, its default
  # compression) from a local file.
  pg_dump "${pg[@]}" --format=custom -f "$out/restore.dump" "$db"
  z1_size=$(pg_dump "${pg[@]}" -Fc -Z1 "$db" | wc -c)
  echo "backup:     $key, $size bytes (pg_dump -Fc -Z1 to a pipe: $z1_size bytes)"
  python3 -c 'import json, sys; [print("  evidence:", e) for e in json.load(open(sys.argv[1]))["steps"][0].get("evidence", [])]' "$out/backup-report.json" || true

  # Sanity: the restore succeeds and brings back every row (timed runs fail on any non-zero exit).
  sh -c "$fresh_target"
  rm -rf "$out/state"
  sh -c "$(restore_cmd "$key")" >"$out/restore.out" 2>&1 || { echo "FAIL: drillbook restore exited $?"; cat "$out/restore.out"; exit 1; }
  "$bin" report restore --state-dir "$out/state" --format json >"$out/restore-report.json"
  python3 -c 'import json, sys; [print("  evidence:", e) for e in json.load(open(sys.argv[1]))["steps"][0].get("evidence", [])]' "$out/restore-report.json" || true
  restored=$(psql "${pg[@]}" -Atc "SELECT count(*) FROM $count_table" "$restore_db")
  [ "$restored" = "$rows" ] || { echo "FAIL: restored $restored $count_table rows, expected $rows"; exit 1; }
  echo "restored:   $restored $count_table rows (same as the source)"

  # (a) and (b): drillbook's backup (its defaults) against both pg_dump baselines.
  compare "$out/backup.json" \
    "pg_dump -Fc -Z1 > /dev/null" "true" "pg_dump ${pg[*]} -Fc -Z1 $db > /dev/null" \
    "pg_dump --format=custom -f FILE" "rm -f $out/default.dump" "pg_dump ${pg[*]} --format=custom -f $out/default.dump $db" \
    "drillbook backup -> S3" "rm -rf $out/state" "$backup"
  default_size=$(stat -c %s "$out/default.dump")
  # (c): both restore into a database created just before, after a checkpoint so neither pays
  # for the other's dirty buffers.
  compare "$out/restore.json" \
    "pg_restore -j2 < local file" "$fresh_target" "pg_restore ${pg[*]} --clean --if-exists --no-owner -j2 -d $restore_db $out/restore.dump" \
    "drillbook restore <- S3" "$fresh_target && rm -rf $out/state" "$(restore_cmd "$key")"

  # (d): peak RSS, with the baselines' own for context.
  rm -rf "$out/state"
  read -r b_rss b_own b_exit b_wall b_user b_sys b_cpu < <(rss "$out/rss-backup.log" sh -c "exec env $backup")
  read -r d_rss d_own d_exit d_wall d_user d_sys d_cpu < <(rss "$out/rss-pg_dump.log" sh -c "exec pg_dump ${pg[*]} -Fc -Z1 $db > /dev/null")
  sh -c "$fresh_target"
  rm -rf "$out/state"
  read -r r_rss r_own r_exit r_wall r_user r_sys r_cpu < <(rss "$out/rss-restore.log" sh -c "exec env $(restore_cmd "$key")")
  sh -c "$fresh_target"
  read -r p_rss p_own p_exit p_wall p_user p_sys p_cpu < <(rss "$out/rss-pg_restore.log" pg_restore "${pg[@]}" --clean --if-exists --no-owner -j2 -d "$restore_db" "$out/restore.dump")
  # A dump of many upload parts (compression 0: 513 MB at scale 50): memory must not grow with it.
  rm -rf "$out/state"
  backup_z0="DATABASE_URL=$pg_url/$db $bin run --state-dir $out/state --run-id backup-z0 --var store=$store $PWD/bench/database-backup-z0.yaml"
  read -r z_rss z_own z_exit z_wall z_user z_sys z_cpu < <(rss "$out/rss-backup-z0.log" sh -c "exec env $backup_z0")
  for run in "backup $b_exit" "pg_dump $d_exit" "restore $r_exit" "pg_restore $p_exit" "backup-z0 $z_exit"; do
    set -- $run
    [ "$2" = 0 ] || { echo "FAIL: the RSS run of $1 exited $2:"; tail -30 "$out/rss-$1.log"; exit 1; }
  done
  cat >"$out/rss.txt" <<EOF
drillbook backup $b_rss $b_own $b_wall $b_user $b_sys $b_cpu
pg_dump -Fc -Z1 $d_rss $d_own $d_wall $d_user $d_sys $d_cpu
drillbook restore $r_rss $r_own $r_wall $r_user $r_sys $r_cpu
pg_restore -j2 $p_rss $p_own $p_wall $p_user $p_sys $p_cpu
drillbook backup -Z0 $z_rss $z_own $z_wall $z_user $z_sys $z_cpu
EOF
  echo "$scale $size $default_size $z1_size" >"$out/sizes.txt"
done

# The table: medians, ratios, sizes, RSS and a verdict per goal, per scale.
python3 - "$work" $scales <<'PY'
import json, sys
work, scales = sys.argv[1], sys.argv[2:]
MiB = 1024
def load(path):
    return {r["command"]: r for r in json.load(open(path))["results"]}
def verdict(ok):
    return "met" if ok else "MISSED"
print("\nratios of hyperfine medians; goals stated at scale 50")
peaks = {}
for scale in scales:
    out = f"{work}/s{scale}"
    b, r = load(f"{out}/backup.json"), load(f"{out}/restore.json")
    _, size, default_size, z1_size = map(int, open(f"{out}/sizes.txt").read().split())
    rss = {}
    for line in open(f"{out}/rss.txt"):
        *name, maxrss, own, wall, user, system, machine = line.split()
        rss[" ".join(name)] = (int(maxrss), int(own), float(wall), float(user), float(system), float(machine))
    print(f"\n--- scale {scale} ---")
    print(f"{'command':<34} {'median s':>9} {'min s':>7} {'max s':>7} {'stddev':>7}")
    for res in list(b.values()) + list(r.values()):
        print(f"{res['command']:<34} {res['median']:>9.3f} {res['min']:>7.3f} {res['max']:>7.3f} {res['stddev']:>7.3f}")
    z1 = b["pg_dump -Fc -Z1 > /dev/null"]["median"]
    default = b["pg_dump --format=custom -f FILE"]["median"]
    ours = b["drillbook backup -> S3"]["median"]
    pr = r["pg_restore -j2 < local file"]["median"]
    dr = r["drillbook restore <- S3"]["median"]
    a = ours / z1
    speedup = default / ours
    grow = size / default_size
    c = dr / pr
    rb, rr = rss["drillbook backup"], rss["drillbook restore"]
    peaks[scale] = (rb[0], rr[0])
    print(f"\n{'goal':<58} {'figure':>16} {'verdict':>8}")
    print(f"{'(a) drillbook backup / pg_dump -Fc -Z1 >/dev/null <= 1.05':<58} {a:>15.3f}x {verdict(a <= 1.05):>8}")
    print(f"{'(b) pg_dump -Fc (default) to file / drillbook >= 2.0':<58} {speedup:>15.3f}x {verdict(speedup >= 2.0):>8}")
    print(f"{'    artifact: drillbook / pg_dump -Fc default <= 1.00':<58} {grow:>15.3f}x {verdict(grow <= 1.00):>8}")
    print(f"      sizes: drillbook {size:,} B, pg_dump -Fc default {default_size:,} B, pg_dump -Fc -Z1 {z1_size:,} B")
    print(f"{'(c) drillbook restore / pg_restore -j2 <= 1.05':<58} {c:>15.3f}x {verdict(c <= 1.05):>8}")
    print(f"{'(d) peak RSS backup (time -v) < 64 MiB':<58} {rb[0] / MiB:>12.1f} MiB {verdict(rb[0] < 64 * MiB):>8}")
    print(f"{'    peak RSS restore (time -v) < 64 MiB':<58} {rr[0] / MiB:>12.1f} MiB {verdict(rr[0] < 64 * MiB):>8}")
    rz = rss["drillbook backup -Z0"]
    print(f"{'    peak RSS backup -Z0, many upload parts (< 64 MiB)':<58} {rz[0] / MiB:>12.1f} MiB {verdict(rz[0] < 64 * MiB):>8}")
    print(f"\n{'one run each':<18} {'time -v MiB':>11} {'own VmHWM MiB':>13} {'wall s':>6} {'user s':>6} {'sys s':>5} {'machine busy s':>14}")
    for name, (maxrss, own, wall, user, system, machine) in rss.items():
        print(f"{name:<18} {maxrss / MiB:>11.1f} {own / MiB:>13.1f} {wall:>6.2f} {user:>6.2f} {system:>5.2f} {machine:>8.2f} ({100 * machine / wall / 2:.0f}%)")
    print("  (user/sys: the process and its children, e.g. pg_dump; machine busy: all CPUs, of 2 cores)")
if len(peaks) > 1:
    print("\n(d) flat across sizes: peak RSS (time -v) by scale")
    for scale, (backup, restore) in peaks.items():
        print(f"  scale {scale:>4}: backup {backup / MiB:6.1f} MiB, restore {restore / MiB:6.1f} MiB")
    flat = all(max(v[i] for v in peaks.values()) <= 1.25 * min(v[i] for v in peaks.values()) for i in (0, 1))
    print(f"  largest / smallest peak of the same operation within 1.25x: {verdict(flat)}")
PY
