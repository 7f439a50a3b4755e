#!/usr/bin/env bash
# The failover lab: everything quarterly-failover.yaml needs, on one machine, on loopback.
#
#   scripts/failover-lab.sh up DIR      start it; writes DIR/lab.env (what a drill needs)
#   scripts/failover-lab.sh status DIR  which cluster is the primary, replication, app health
#   scripts/failover-lab.sh down DIR    stop everything and remove the clusters
#   scripts/failover-lab.sh partition DIR   cut the primary off (LAB_NETNS labs only)
#   scripts/failover-lab.sh heal DIR        undo `partition`
#
# What `up` starts:
#   - a PostgreSQL primary (database `app`, a table `orders`) and a streaming-replication
#     standby made with `pg_basebackup -R`: separate data directories and ports, data
#     checksums on (pg_rewind needs them to turn the old primary into the new standby), run as
#     the `postgres` OS user when we are root (initdb and postgres refuse root);
#   - two S3 buckets, `lab-storage` (the service's files, under `app/`) and `lab-mirror`: on
#     s3s-fs, started here unless LAB_S3_ENDPOINT and LAB_S3_ROOT name a server already serving
#     LAB_S3_ROOT (each bucket is a directory there) with the AWS_* credentials in the
#     environment;
#   - with a drillbook binary (DRILLBOOK, target/debug, or PATH): the primary archives its WAL
#     through `drillbook wal push` into DIR/wal (a copy of the binary in DIR/bin), a nightly
#     backup goes to lab-backups and an hourly base backup to DIR/wal, so a drill has both
#     kinds of RPO evidence (`--var drill_wal_store=$WAL_STORE`);
#   - a few cache keys in Redis (127.0.0.1:6379, database LAB_REDIS_DB, default 9);
#   - with LAB_NETNS=NAME (root only), the primary in a network namespace of that name, reached
#     over a veth pair (10.231.X.1 here, 10.231.X.2 there): `partition` then drops every
#     packet between the two (static neighbour entries to an address no one has — nothing
#     answers, nothing is refused, as when a region drops off the network), `heal` undoes it;
#   - the application (examples/lab-app.rs, or LAB_APP): its /health reads DATABASE_URL and
#     STORAGE_URL from DIR/app.env on every request, writes a row, and reads `health.txt` from
#     the storage. It answers 200 only when the database is a writable primary.
#
# Then, for example:
#   set -a; . DIR/lab.env; set +a
#   drillbook run playbooks/quarterly-failover.yaml --approve-all \
#     --var drill_env_file=$APP_ENV_FILE --var drill_health_url=$HEALTH_URL ... (see lab.env)
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -eq 2 ] || usage
action=$1
dir=$2
repo=$(cd "$(dirname "$0")/.." && pwd)

pg_bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
redis_db=${LAB_REDIS_DB:-9}

# PostgreSQL's server programs as the `postgres` OS user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "failover-lab: nothing answers on port $1" >&2
  return 1
}

psql_at() {
  local host=$1 port=$2
  shift 2
  psql --no-psqlrc -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "$port" -U postgres "$@"
}

# A cluster's server options (its address and port, sockets in the lab, WAL kept for the old
# primary to catch up after pg_rewind).
options() {
  echo "-p $2 -c listen_addresses=$1 -k $dir/pg -c wal_keep_size=256MB"
}

# Starts a cluster (in the namespace NETNS, when set). The port goes on the command line, not
# in the configuration: pg_rewind and pg_basebackup copy the configuration files from the
# other cluster.
start_cluster() {
  local data=$1 host=$2 port=$3
  if [ "$host" = 127.0.0.1 ]; then
    as_pg "$pg_bin/pg_ctl" -D "$data" -l "$data.log" -w -t 60 -o "$(options "$host" "$port")" start >/dev/null
  else
    ip netns exec "$NETNS" runuser -u postgres -- \
      "$pg_bin/pg_ctl" -D "$data" -l "$data.log" -w -t 60 -o "$(options "$host" "$port")" start >/dev/null
  fi
}

# The primary's namespace: a veth pair on a /30 of 10.231.0.0/16 no interface here uses yet.
# Sets NETNS, NETNS_IF (this side), HOST_ADDR (this side's address) and PRIMARY_HOST.
make_netns() {
  NETNS=$LAB_NETNS
  [ "$(id -u)" = 0 ] || { echo "failover-lab: LAB_NETNS needs root" >&2; exit 1; }
  local subnet tag
  for _ in $(seq 50); do
    subnet=10.231.$((RANDOM % 256))
    ip -o addr | grep -q " $subnet\." || break
  done
  tag=$(printf '%04x' $((RANDOM % 65536)))
  NETNS_IF=dbl${tag}h
  HOST_ADDR=$subnet.1
  PRIMARY_HOST=$subnet.2
  ip netns add "$NETNS"
  echo "$NETNS" >"$dir/netns"
  ip link add "$NETNS_IF" type veth peer name "dbl${tag}n"
  ip link set "dbl${tag}n" netns "$NETNS"
  ip addr add "$HOST_ADDR/30" dev "$NETNS_IF"
  ip link set "$NETNS_IF" up
  ip -n "$NETNS" addr add "$PRIMARY_HOST/30" dev "dbl${tag}n"
  ip -n "$NETNS" link set "dbl${tag}n" up
  ip -n "$NETNS" link set lo up
}

# Packets between this host and the primary's namespace go to a link address nobody has.
partition() {
  # shellcheck disable=SC1091
  . "$dir/lab.env"
  [ -n "${NETNS:-}" ] || { echo "failover-lab: this lab has no LAB_NETNS: nothing to cut" >&2; exit 1; }
  local ns_if
  ns_if=$(ip -n "$NETNS" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1)
  ip neigh replace "$A_HOST" lladdr 02:00:00:00:de:ad dev "$NETNS_IF" nud permanent
  ip -n "$NETNS" neigh replace "$NETNS_HOST_ADDR" lladdr 02:00:00:00:de:ad dev "$ns_if" nud permanent
  echo "== partitioned: $A_HOST is cut off"
}

heal() {
  # shellcheck disable=SC1091
  . "$dir/lab.env"
  [ -n "${NETNS:-}" ] || exit 0
  local ns_if
  ns_if=$(ip -n "$NETNS" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1)
  ip neigh del "$A_HOST" dev "$NETNS_IF" 2>/dev/null || true
  ip -n "$NETNS" neigh del "$NETNS_HOST_ADDR" dev "$ns_if" 2>/dev/null || true
  echo "== healed"
}

up() {
  if [ -e "$dir/lab.env" ]; then
    echo "failover-lab: $dir/lab.env exists: the lab is up (run \`down $dir\` first)" >&2
    exit 1
  fi
  [ -x "$pg_bin/initdb" ] || { echo "failover-lab: no initdb in $pg_bin (set PG_BIN)" >&2; exit 1; }
  mkdir -p "$dir/pg"
  dir=$(cd "$dir" && pwd)
  # The postgres user must reach its directories.
  chmod 0711 "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/pg"; fi

  local primary_port standby_port app_port
  PRIMARY_HOST=127.0.0.1 NETNS='' NETNS_IF='' HOST_ADDR=''
  [ -z "${LAB_NETNS:-}" ] || make_netns
  primary_port=$(free_port)
  standby_port=$(free_port)
  while [ "$standby_port" = "$primary_port" ]; do standby_port=$(free_port); done

  local drillbook=${DRILLBOOK:-}
  if [ -z "$drillbook" ] && [ -x "$repo/target/debug/drillbook" ]; then drillbook=$repo/target/debug/drillbook; fi
  if [ -z "$drillbook" ]; then drillbook=$(command -v drillbook || true); fi

  echo "== primary on $PRIMARY_HOST port $primary_port"
  as_pg "$pg_bin/initdb" -D "$dir/pg/a" -U postgres -A trust --data-checksums --no-sync \
    >"$dir/pg/initdb.log"
  if [ -n "$drillbook" ]; then
    # The archiver runs drillbook as postgres: a copy it can reach, into a directory it owns.
    # The standby, a copy of this directory, archives the same way once promoted.
    mkdir -p "$dir/bin" "$dir/wal"
    cp "$drillbook" "$dir/bin/drillbook"
    chmod 0755 "$dir/bin" "$dir/bin/drillbook"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/wal"; fi
    printf "archive_mode = on\narchive_command = '%s wal push --store %s %%p'\n" \
      "$dir/bin/drillbook" "$dir/wal" >>"$dir/pg/a/postgresql.conf"
  fi
  if [ -n "$NETNS" ]; then
    printf 'host all all %s/32 trust\nhost replication all %s/32 trust\n' "$HOST_ADDR" "$HOST_ADDR" \
      >>"$dir/pg/a/pg_hba.conf"
  fi
  start_cluster "$dir/pg/a" "$PRIMARY_HOST" "$primary_port"
  psql_at "$PRIMARY_HOST" "$primary_port" -d postgres -c "CREATE DATABASE app"
  psql_at "$PRIMARY_HOST" "$primary_port" -d app -c "
    CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL, at timestamptz NOT NULL DEFAULT now());
    INSERT INTO orders (item) SELECT 'item ' || n FROM generate_series(1, 1000) AS n;"

  echo "== standby on port $standby_port (pg_basebackup -R)"
  as_pg "$pg_bin/pg_basebackup" -h "$PRIMARY_HOST" -p "$primary_port" -U postgres -D "$dir/pg/b" \
    -R -X stream --checkpoint=fast
  start_cluster "$dir/pg/b" 127.0.0.1 "$standby_port"
  for _ in $(seq 100); do
    [ "$(psql_at "$PRIMARY_HOST" "$primary_port" -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ] && break
    sleep 0.1
  done
  [ "$(psql_at 127.0.0.1 "$standby_port" -d postgres -c "SELECT pg_is_in_recovery()")" = t ] ||
    { echo "failover-lab: the standby is not in recovery" >&2; exit 1; }

  echo "== storage"
  local s3_root
  if [ -n "${LAB_S3_ENDPOINT:-}" ]; then
    s3_root=${LAB_S3_ROOT:?LAB_S3_ROOT: the directory the server at LAB_S3_ENDPOINT serves}
    s3_endpoint=$LAB_S3_ENDPOINT
  else
    export PATH="$HOME/.cargo/bin:$PATH"
    command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked --quiet
    s3_root=$dir/s3
    mkdir -p "$s3_root"
    local s3_port
    s3_port=$(free_port)
    export AWS_ACCESS_KEY_ID=lab AWS_SECRET_ACCESS_KEY=lab-secret AWS_REGION=us-east-1
    s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key lab --secret-key lab-secret \
      "$s3_root" >"$dir/s3.log" 2>&1 &
    echo $! >"$dir/s3.pid"
    wait_port "$s3_port"
    s3_endpoint=http://127.0.0.1:$s3_port
  fi
  mkdir -p "$s3_root/lab-storage/app/uploads" "$s3_root/lab-mirror" "$s3_root/lab-backups"
  echo "lab storage is readable" >"$s3_root/lab-storage/app/health.txt"
  for n in $(seq 1 50); do
    head -c $((n * 997)) /dev/urandom >"$s3_root/lab-storage/app/uploads/file-$n.bin"
  done

  echo "== cache (redis database $redis_db)"
  for n in $(seq 1 20); do
    redis-cli -h 127.0.0.1 -n "$redis_db" SET "lab:cache:$n" "cached $n" >/dev/null
  done

  echo "== application"
  cat >"$dir/app.env" <<EOF
# the lab application's settings (rewritten by the failover)
DATABASE_URL=postgres://postgres@$PRIMARY_HOST:$primary_port/app
STORAGE_URL=s3://lab-storage/app
REDIS_URL=redis://127.0.0.1:6379/$redis_db
EOF
  local app=${LAB_APP:-}
  if [ -z "$app" ]; then
    (cd "$repo" && cargo build --quiet --example lab-app)
    app=$repo/target/debug/examples/lab-app
  fi
  app_port=$(free_port)
  AWS_ENDPOINT_URL=$s3_endpoint "$app" --env-file "$dir/app.env" --listen "127.0.0.1:$app_port" \
    >"$dir/app.log" 2>&1 &
  echo $! >"$dir/app.pid"
  wait_port "$app_port"

  # The newest backup is the failover's RPO evidence: take one, as the nightly job would
  # (`--mode live`, as the scheduled job runs; the lab's store is the live store here).
  if [ -n "$drillbook" ]; then
    echo "== nightly backup"
    DATABASE_URL=postgres://postgres@$PRIMARY_HOST:$primary_port/app AWS_ENDPOINT_URL=$s3_endpoint \
      "$drillbook" run "$repo/playbooks/nightly-backup.yaml" --state-dir "$dir/lab-state" \
      --mode live --var store=s3://lab-backups/app >"$dir/backup.log" 2>&1 ||
      { echo "failover-lab: the backup failed, see $dir/backup.log" >&2; exit 1; }
    echo "== base backup into the WAL archive"
    DATABASE_URL=postgres://postgres@$PRIMARY_HOST:$primary_port/postgres \
      "$drillbook" run "$repo/playbooks/base-backup.yaml" --state-dir "$dir/lab-state" \
      --mode live --var "wal_store=$dir/wal" >"$dir/base-backup.log" 2>&1 ||
      { echo "failover-lab: the base backup failed, see $dir/base-backup.log" >&2; exit 1; }
  else
    echo "failover-lab: no drillbook binary (set DRILLBOOK): no backup taken" >&2
  fi

  cat >"$dir/lab.env" <<EOF
LAB_DIR=$dir
PG_BIN=$pg_bin
PG_SOCKETS=$dir/pg
A_DATA=$dir/pg/a
A_HOST=$PRIMARY_HOST
A_PORT=$primary_port
B_DATA=$dir/pg/b
B_HOST=127.0.0.1
B_PORT=$standby_port
A_OPTIONS="$(options "$PRIMARY_HOST" "$primary_port")"
B_OPTIONS="$(options 127.0.0.1 "$standby_port")"
A_URL=postgres://postgres@$PRIMARY_HOST:$primary_port/app
B_URL=postgres://postgres@127.0.0.1:$standby_port/app
DRILL_REDIS_URL=redis://127.0.0.1:6379/$redis_db
STORE=s3://lab-backups/app
WAL_STORE=$([ -d "$dir/wal" ] && echo "$dir/wal")
STORAGE=s3://lab-storage/app
MIRROR=s3://lab-mirror/app
APP_ENV_FILE=$dir/app.env
HEALTH_URL=http://127.0.0.1:$app_port/health
CHAT_WEBHOOK=http://127.0.0.1:$app_port/messages/chat
STATUS_PAGE=http://127.0.0.1:$app_port/messages/statuspage/v1/pages/lab/incidents
AWS_ENDPOINT_URL=$s3_endpoint
NETNS=$NETNS
NETNS_IF=$NETNS_IF
NETNS_HOST_ADDR=$HOST_ADDR
EOF
  if [ -z "${LAB_S3_ENDPOINT:-}" ]; then
    printf 'AWS_ACCESS_KEY_ID=lab\nAWS_SECRET_ACCESS_KEY=lab-secret\nAWS_REGION=us-east-1\n' >>"$dir/lab.env"
  fi
  echo "== up: $dir/lab.env"
  status
}

status() {
  # shellcheck disable=SC1091
  . "$dir/lab.env"
  for name in A B; do
    local port_var=${name}_PORT data_var=${name}_DATA host_var=${name}_HOST role
    if as_pg "$PG_BIN/pg_ctl" -D "${!data_var}" status >/dev/null 2>&1; then
      local host=${!host_var:-127.0.0.1}
      case $(PGCONNECT_TIMEOUT=3 psql_at "$host" "${!port_var}" -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null) in
        t) role="standby (streaming: $(psql_at "$host" "${!port_var}" -d postgres -c "SELECT status FROM pg_stat_wal_receiver"))" ;;
        f) role="primary ($(psql_at "$host" "${!port_var}" -d postgres -c "SELECT count(*) FROM pg_stat_replication") standby attached)" ;;
        *) role="running, unreachable at $host" ;;
      esac
    else
      role="stopped"
    fi
    echo "cluster $name on port ${!port_var}: $role"
  done
  echo "app: $(grep -E '^(DATABASE|STORAGE)_URL=' "$APP_ENV_FILE" | tr '\n' ' ')"
  python3 - "$HEALTH_URL" <<'PY' || true
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        print("health:", r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print("health:", e.code, e.read().decode())
except Exception as e:
    print("health: no answer:", e)
PY
}

down() {
  if [ ! -e "$dir/lab.env" ] && [ -e "$dir/netns" ]; then ip netns del "$(cat "$dir/netns")" 2>/dev/null || true; fi
  [ -e "$dir/lab.env" ] || { echo "failover-lab: no lab in $dir" >&2; exit 0; }
  # shellcheck disable=SC1091
  . "$dir/lab.env"
  for pid_file in "$dir/app.pid" "$dir/s3.pid"; do
    [ -e "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  done
  for data in "$A_DATA" "$B_DATA"; do
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  done
  redis-cli -h 127.0.0.1 -n "${DRILL_REDIS_URL##*/}" FLUSHDB >/dev/null 2>&1 || true
  # Deleting the namespace deletes its end of the veth pair, and with it this one.
  [ -z "${NETNS:-}" ] || ip netns del "$NETNS" 2>/dev/null || true
  rm -rf "$dir/pg" "$dir/s3" "$dir/wal" "$dir/bin" "$dir/lab.env" "$dir/netns"
  echo "== down"
}

case $action in
  up) up ;;
  status) dir=$(cd "$dir" && pwd); status ;;
  down) down ;;
  partition) partition ;;
  heal) heal ;;
  *) usage ;;
esac
