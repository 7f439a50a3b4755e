#!/usr/bin/env bash
# Point-in-time recovery benchmarks (issue 16), side by side in one run, on one primary that
# archives every segment twice — `drillbook wal push` into a directory store and `pgbackrest
# archive-push` into a posix repository — so both restore the very same data:
#
#   (1) restore: drillbook's base backup + replay of the WAL a pgbench run wrote after it, into a
#       throwaway cluster, against
#       (a) a logical restore of the same final state (drillbook's dump, restore into a
#           throwaway cluster): report the ratio (the issue expects several times faster);
#       (b) pgBackRest's restore of its own full backup taken at the same moment, recovered
#           through its archive-get and promoted: drillbook <= 1.1x.
#   (2) `wal push` of 16 MiB segments into a directory store against `pgbackrest archive-push`
#       into a fresh posix repository (its default gz compression): drillbook >= 1.0x as fast.
#   (3) drillbook's peak RSS (/usr/bin/time -v) pushing a segment, taking the base backup and
#       restoring it: each < 64 MiB.
#
#   bash bench/pitr.sh                 # SCALE=100 (realistic.sql), PGBENCH_SECONDS=30, RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
scale=${SCALE:-100}
seconds=${PGBENCH_SECONDS:-30}
runs=${RUNS:-3}
for package in hyperfine pgbackrest zstd; do
  command -v "$package" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$package"; }
done
realistic=$PWD/../shared/bench-data/realistic.sql
[ -f "$realistic" ] || { echo "no $realistic"; exit 1; }
cargo build --release --quiet
pgbin=/usr/lib/postgresql/15/bin

work=$(mktemp -d /tmp/bench-pitr.XXXXXX)
chmod 711 "$work"
bin=$work/drillbook
cp target/release/drillbook "$bin"
chmod 755 "$bin"
as_pg() { runuser -u postgres -- "$@"; }
port=$(free_port)
mkdir -p "$work"/{archive,repo,push-repo,log,lock,sock,segments,out}
chown -R postgres "$work"
cleanup() {
  as_pg "$pgbin/pg_ctl" -D "$work/primary" -m immediate stop >/dev/null 2>&1 || true
  for data in "$work"/pgbr-restore-*; do
    [ -d "$data" ] && as_pg "$pgbin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

conf=$work/pgbackrest.conf
cat >"$conf" <<EOF
[global]
repo1-path=$work/repo
repo1-retention-full=9
log-path=$work/log
lock-path=$work/lock
log-level-console=warn
log-level-file=off
start-fast=y

[bench]
pg1-path=$work/primary
pg1-port=$port
pg1-socket-path=$work/sock

[push]
repo1-path=$work/push-repo
pg1-path=$work/primary
pg1-port=$port
pg1-socket-path=$work/sock
EOF
chown postgres "$conf"

as_pg "$pgbin/initdb" -D "$work/primary" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
cat >>"$work/primary/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/sock'
max_wal_size = 4GB
archive_mode = on
archive_command = 'DRILLBOOK_WAL_STORE=$work/archive $bin wal push %p && pgbackrest --config=$conf --stanza=bench archive-push %p'
EOF
as_pg "$pgbin/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w start >/dev/null
url=postgres://postgres@127.0.0.1:$port
psql -X -q "$url/postgres" -c "CREATE DATABASE bench"
echo "loading realistic.sql at scale $scale and pgbench's tables"
psql -X -q -v scale="$scale" -d "$url/bench" -f "$realistic" >/dev/null
pgbench -q -i -s 10 "$url/bench" >/dev/null 2>&1
as_pg pgbackrest --config="$conf" --stanza=bench stanza-create >/dev/null
as_pg pgbackrest --config="$conf" --stanza=push stanza-create >/dev/null

echo "machine:    $(nproc) CPUs, $(uname -sr)"
echo "drillbook:  $(git rev-parse --short HEAD), pgBackRest $(pgbackrest version | awk '{print $2}'), PostgreSQL $(psql -X -Atc 'SHOW server_version' "$url/postgres")"
echo "database:   $(psql -X -Atc "SELECT pg_size_pretty(pg_database_size('bench'))" "$url/postgres")"

cat >"$work/base.yaml" <<EOF
version: 1
name: bench-base
secrets: [DATABASE_URL]
steps:
  - id: backup
    kind: backup
    format: base
    database: "{{ secrets.DATABASE_URL }}"
    store: $work/archive
EOF
cat >"$work/dump.yaml" <<EOF
version: 1
name: bench-dump
secrets: [DATABASE_URL]
steps:
  - id: backup
    kind: backup
    database: "{{ secrets.DATABASE_URL }}"
    store: $work/dumps
EOF
# The base backups, both at the same moment; then the WAL a pgbench run writes after them.
DATABASE_URL=$url/bench "$bin" run "$work/base.yaml" --mode live --state-dir "$work/out/base" >/dev/null
as_pg pgbackrest --config="$conf" --stanza=bench backup --type=full >/dev/null
echo "pgbench:    $seconds s of writes after the base backups"
pgbench -c 2 -T "$seconds" "$url/bench" 2>/dev/null | grep -E "^(number of transactions actually processed|tps)" | sed "s/^/            /" || { echo "pgbench failed"; exit 1; }
switched=$(psql -X -Atc "SELECT pg_walfile_name(pg_switch_wal())" "$url/postgres")
until [ "$(psql -X -Atc "SELECT coalesce(last_archived_wal, '') >= '$switched' FROM pg_stat_archiver" "$url/postgres")" = t ]; do sleep 0.5; done
echo "archive:    $(find "$work/archive/wal" -name '*.zst' | wc -l) objects, $(du -sh "$work/archive/wal" | cut -f1) (drillbook); $(du -sh "$work/repo/archive" | cut -f1) (pgBackRest)"
# The same final state, dumped: the logical baseline.
DATABASE_URL=$url/bench "$bin" run "$work/dump.yaml" --mode live --state-dir "$work/out/dump" >/dev/null
base_key=$(cd "$work/archive" && ls base/*.tar.zst | head -1)
dump_key=$(cd "$work/dumps" && ls *.dump | head -1)
label=$(as_pg pgbackrest --config="$conf" --stanza=bench info --output=json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["backup"][-1]["label"])')
rows=$(psql -X -Atc "SELECT count(*) FROM pgbench_history" "$url/bench")

cat >"$work/pitr.yaml" <<EOF
version: 1
name: bench-pitr
steps:
  - id: restore
    kind: restore
    backup: $base_key
    store: $work/archive
    target: ephemeral
    recovery_target: latest
    database: bench
  - id: check
    kind: smoke-test
    database: "{{ steps.restore.outputs.target }}"
    checks:
      - sql: "SELECT count(*) FROM pgbench_history"
        expect: "$rows"
EOF
cat >"$work/logical.yaml" <<EOF
version: 1
name: bench-logical
steps:
  - id: restore
    kind: restore
    backup: $dump_key
    store: $work/dumps
    target: ephemeral
    jobs: 2
  - id: check
    kind: smoke-test
    database: "{{ steps.restore.outputs.target }}"
    checks:
      - sql: "SELECT count(*) FROM pgbench_history"
        expect: "$rows"
EOF
# pgBackRest's restore as its users run it: restore, recover through archive-get to the end,
# promote; the same throwaway settings drillbook gives its cluster (own port, archive_mode
# off, hot_standby off so that "ready" means promoted), then stopped and removed.
cat >"$work/pgbr-restore.sh" <<EOF
#!/bin/sh
set -e
data=$work/pgbr-restore-\$\$
mkdir -m 700 "\$data" && chown postgres "\$data"
runuser -u postgres -- pgbackrest --config=$conf --stanza=bench --pg1-path="\$data" --set=$label --type=default restore
cat >>"\$data/postgresql.auto.conf" <<CONF
port = $(free_port)
unix_socket_directories = '$work/sock'
archive_mode = off
hot_standby = off
recovery_target_action = 'promote'
CONF
runuser -u postgres -- $pgbin/pg_ctl -D "\$data" -l "\$data.log" -w -t 3600 start >/dev/null
runuser -u postgres -- $pgbin/pg_ctl -D "\$data" -m immediate stop >/dev/null
rm -rf "\$data" "\$data.log"
EOF
chmod 755 "$work/pgbr-restore.sh"

# Sanity: each restore succeeds once (drillbook's check the rows the pgbench run wrote).
"$bin" run "$work/pitr.yaml" --state-dir "$work/out/pitr" >"$work/out/pitr.txt" 2>&1 || { cat "$work/out/pitr.txt"; exit 1; }
"$bin" report "$(ls "$work/out/pitr/runs" | head -1)" --state-dir "$work/out/pitr" --format json |
  python3 -c 'import json, sys; [print("  evidence:", e) for s in json.load(sys.stdin)["steps"] for e in s.get("evidence", [])]'
"$bin" run "$work/logical.yaml" --state-dir "$work/out/logical" >"$work/out/logical.txt" 2>&1 || { cat "$work/out/logical.txt"; exit 1; }
"$work/pgbr-restore.sh"

echo
echo "(1) restore of the same data, $runs runs + 1 warm-up each"
hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$work/restore.json" \
  --command-name "drillbook PITR (base + WAL replay)" --prepare "rm -rf $work/out/pitr" \
  "$bin run $work/pitr.yaml --state-dir $work/out/pitr" \
  --command-name "drillbook logical restore (jobs 2)" --prepare "rm -rf $work/out/logical" \
  "$bin run $work/logical.yaml --state-dir $work/out/logical" \
  --command-name "pgBackRest restore + recovery" --prepare "true" \
  "$work/pgbr-restore.sh" | grep -E "Benchmark|Time"

# (2) wal push: 16 segments of the pgbench run, decompressed from drillbook's archive.
for object in $(find "$work/archive/wal" -name '0*.zst' ! -name '*.backup.zst' ! -name '*.partial.zst' | sort | tail -16); do
  name=$(basename "$object" .zst)
  zstd -q -dc "$object" >"$work/segments/$name"
done
chown -R postgres "$work/segments"
count=$(ls "$work/segments" | wc -l)
cat >"$work/push-drillbook.sh" <<EOF
#!/bin/sh
set -e
for f in $work/segments/*; do DRILLBOOK_WAL_STORE=$work/push-store $bin wal push "\$f" >/dev/null; done
EOF
cat >"$work/push-pgbackrest.sh" <<EOF
#!/bin/sh
set -e
for f in $work/segments/*; do runuser -u postgres -- pgbackrest --config=$conf --stanza=push archive-push "\$f"; done
EOF
chmod 755 "$work/push-drillbook.sh" "$work/push-pgbackrest.sh"
reset_push_repo="rm -rf $work/push-repo/archive/push/15-1"
echo
echo "(2) archiving $count segments of 16 MiB, one command per segment as PostgreSQL runs it"
hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$work/push.json" \
  --command-name "drillbook wal push -> directory" --prepare "rm -rf $work/push-store" "$work/push-drillbook.sh" \
  --command-name "pgbackrest archive-push -> posix" --prepare "$reset_push_repo" "$work/push-pgbackrest.sh" | grep -E "Benchmark|Time"

# (3) peak RSS of one run each.
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}'; }
first=$(ls "$work/segments" | head -1)
rm -rf "$work/push-store"
push_rss=$(DRILLBOOK_WAL_STORE=$work/push-store rss "$bin" wal push "$work/segments/$first")
base_rss=$(DATABASE_URL=$url/bench rss "$bin" run "$work/base.yaml" --mode live --state-dir "$work/out/base-rss")
rm -rf "$work/out/pitr"
restore_rss=$(rss "$bin" run "$work/pitr.yaml" --state-dir "$work/out/pitr")

python3 - "$work" "$push_rss" "$base_rss" "$restore_rss" "$count" <<'PY'
import json, sys
work, push_rss, base_rss, restore_rss, count = sys.argv[1], *map(int, sys.argv[2:])
def medians(path):
    return {r["command"]: r["median"] for r in json.load(open(path))["results"]}
r, p = medians(f"{work}/restore.json"), medians(f"{work}/push.json")
pitr, logical, pgbr = r["drillbook PITR (base + WAL replay)"], r["drillbook logical restore (jobs 2)"], r["pgBackRest restore + recovery"]
ours, theirs = p["drillbook wal push -> directory"], p["pgbackrest archive-push -> posix"]
ok = lambda b: "met" if b else "MISSED"
print("\nmedians (s):", ", ".join(f"{k} {v:.2f}" for k, v in {**r, **p}.items()))
print(f"(1a) logical restore / PITR restore (report)            {logical / pitr:6.2f}x")
print(f"(1b) PITR restore / pgBackRest restore <= 1.1           {pitr / pgbr:6.2f}x  {ok(pitr / pgbr <= 1.1)}")
print(f"(2)  archive-push time / wal push time >= 1.0           {theirs / ours:6.2f}x  {ok(theirs / ours >= 1.0)}")
print(f"     wal push: {count * 16 / ours:.0f} MiB/s of WAL; archive-push: {count * 16 / theirs:.0f} MiB/s")
for name, kib in [("wal push of one segment", push_rss), ("base backup", base_rss), ("PITR restore", restore_rss)]:
    print(f"(3)  peak RSS, {name:<24} {kib / 1024:6.1f} MiB  {ok(kib < 64 * 1024)}")
PY
