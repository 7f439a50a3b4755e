//! `assess`, `backup` and `restore` by hand: the store listed and the manifest read with
//! `jq`, the dump checked with `sha256sum` before anything is restored, zstd undone,
//! `pg_restore` into a scratch database and the swap by renaming, as the step kinds do.

use super::Section;
use super::shell::{Ctx, quote};
use crate::model::Step;
use crate::steps::assess::{Assess, OnRpoMiss};
use crate::steps::backup::{Backup, DumpCompression, DumpFormat};
use crate::steps::engine::Engine;
use crate::steps::restore::{EPHEMERAL, Restore};

/// Whether a store holds a WAL archive (base backups) rather than dumps: the shipped
/// playbooks name those stores `wal_store`.
fn is_archive(store: &str, ctx: &Ctx) -> bool {
    store.contains("wal")
        || store
            .split("target.")
            .skip(1)
            .filter_map(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                ctx.playbook.targets.live.get(&name)
            })
            .any(|live| live.contains("wal"))
}

fn rpo_seconds(ctx: &Ctx) -> Option<u64> {
    ctx.playbook.objectives.rpo.map(|rpo| rpo.0.as_secs())
}

pub(super) fn assess(step: &Step, assess: &Assess, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    if assess.engine == Engine::Pgbackrest {
        let stanza = ctx.w(assess.stanza.as_deref().unwrap_or_default());
        let config = assess
            .config
            .as_deref()
            .map(|c| format!(" --config={}", ctx.w(c)))
            .unwrap_or_default();
        s.text("pgBackRest's own list of backups: take the newest `full`, `diff` or `incr` whose status is `ok`; its stop time is what the data is as of.");
        s.sh(format!(
            "pgbackrest --stanza={stanza}{config} info\npgbackrest --stanza={stanza}{config} --output=json info | jq -r '.[0].backup[-1] | \"\\(.label) \\(.type) stopped \\(.timestamp.stop | todate)\"'"
        ));
        s.check("the newest backup's stop time is within the RPO of the incident");
        return;
    }
    let store = ctx.w(&assess.store);
    ctx.uses(&["fetch", "keys", "size_of", "fail"]);
    if is_archive(&assess.store, ctx) {
        archive(id, &store, ctx, s);
        return;
    }
    s.text(
        "The store's backups, newest first (a key is the UTC time of its snapshot), and the first \
         one that is complete: its manifest (`KEY.manifest.json`, written last) is there and says \
         the size the store holds. An incomplete backup is never restored.",
    );
    let candidates = match &assess.key {
        Some(key) => ctx.w(key),
        None => format!("$(keys \"${id}_store\" | grep -E '\\.dump$' | sort -r)"),
    };
    let backup = ctx.sets(id, "backup");
    let taken_at = ctx.sets(id, "taken_at");
    let sha256 = ctx.sets(id, "sha256");
    let bytes = ctx.sets(id, "bytes");
    let size = ctx.sets(id, "size");
    let age = ctx.sets(id, "age");
    let mut sh = format!(
        "{id}_store={store}\n{backup}=\nfor key in {candidates}; do\n  \
         if ! fetch \"${id}_store\" \"$key.manifest.json\" \"$RUNBOOK_DIR/$key.manifest.json\" 2>/dev/null; then\n    \
         echo \"skipped $key: no manifest (an interrupted or unfinished backup)\"; continue\n  fi\n  \
         if [ \"$(size_of \"${id}_store\" \"$key\")\" != \"$(jq -r .size \"$RUNBOOK_DIR/$key.manifest.json\")\" ]; then\n    \
         echo \"skipped $key: the store holds another size than its manifest says\"; continue\n  fi\n  \
         {backup}=$key; break\ndone\n\
         [ -n \"${backup}\" ] || fail \"no complete backup in ${id}_store\"\n\
         {id}_manifest=\"$RUNBOOK_DIR/${backup}.manifest.json\"\n\
         {taken_at}=$(jq -r .snapshot_at \"${id}_manifest\")\n\
         {sha256}=$(jq -r .sha256 \"${id}_manifest\")\n\
         {bytes}=$(jq -r .size \"${id}_manifest\")\n\
         {size}=\"${bytes} bytes\"\n\
         {age}=\"$(( ($(date +%s) - $(date -d \"${taken_at}\" +%s)) / 60 )) min\"\n\
         echo \"chose ${backup}: taken ${taken_at}, ${age} old, ${size}, sha256 ${sha256}\"\n"
    );
    if let Some(rpo) = rpo_seconds(ctx) {
        let objective = ctx
            .playbook
            .objectives
            .rpo
            .map(|r| r.to_string())
            .unwrap_or_default();
        let verdict = match assess.on_rpo_miss {
            OnRpoMiss::Fail => {
                format!("fail \"the newest good backup is older than the RPO of {objective}\"")
            }
            OnRpoMiss::Record => format!(
                "echo \"RPO MISSED: the backup is older than {objective}; note it for the report and go on\""
            ),
        };
        sh.push_str(&format!(
            "# The RPO: the data is as of the snapshot; everything after it is lost. (Measured from now:\n\
             # from when the incident began, it is that much shorter.)\n\
             [ $(( $(date +%s) - $(date -d \"${taken_at}\" +%s) )) -le {rpo} ] || {verdict}\n"
        ));
        s.check(format!(
            "the backup's age (`${age}`) is within the RPO of {objective}, counted from when the incident began; if not, write it down{}",
            if assess.on_rpo_miss == OnRpoMiss::Fail { " and stop" } else { " and go on" }
        ));
    }
    if assess.before.is_some() {
        s.text(format!(
            "The playbook wants the newest backup taken before `{}`: skip keys whose time (their name) is not earlier.",
            ctx.prose(assess.before.as_deref().unwrap_or_default())
        ));
    }
    s.sh(sh);
    if let Some(standby) = &assess.standby {
        let standby = ctx.w(standby);
        ctx.uses(&["pg"]);
        let lag = ctx.sets(id, "replication_lag");
        s.text("The standby's replication lag: 0 when it streams and has replayed all it received; otherwise the time since the last transaction it replayed.");
        s.sh(format!(
            "{lag}=$(sql {standby} -c \"SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'not a standby' \
             WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN '0s' \
             ELSE coalesce(round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::text || 's', 'unknown (nothing replayed yet)') END\")\n\
             echo \"standby replication lag: ${lag}\""
        ));
        s.check(format!("the standby's lag (`${lag}`) is what you expect: it is data the promoted standby will not have"));
    }
    s.check(format!(
        "`${backup}` is the backup you expect (its time, its size); `skipped` lines name incomplete ones"
    ));
}

/// `assess` over a WAL archive: base backups under `base/`, WAL under `wal/`.
fn archive(id: &str, store: &str, ctx: &mut Ctx, s: &mut Section) {
    let backup = ctx.sets(id, "backup");
    s.text(
        "The store is a WAL archive: base backups under `base/` (`TIME.tar.zst`, each with its \
         manifest written last) and WAL segments under `wal/TIMELINE+LOG/SEGMENT.zst`. Take the newest \
         complete base backup. drillbook also checks that the archive holds every segment from the \
         backup's `start_segment` on (a hole is where recovery would stop) and reads the last \
         archived commit with `pg_waldump` (the RPO); by hand, list the newest segments and look \
         at them.",
    );
    s.sh(format!(
        "{id}_store={store}\n{backup}=\n\
         for key in $(keys \"${id}_store/base\" | grep -E '\\.tar\\.zst$' | sort -r); do\n  \
         fetch \"${id}_store/base\" \"$key.manifest.json\" \"$RUNBOOK_DIR/$key.manifest.json\" 2>/dev/null || continue\n  \
         [ \"$(size_of \"${id}_store/base\" \"$key\")\" = \"$(jq -r .size \"$RUNBOOK_DIR/$key.manifest.json\")\" ] || continue\n  \
         {backup}=base/$key; break\ndone\n\
         [ -n \"${backup}\" ] || fail \"no complete base backup in ${id}_store\"\n\
         jq '{{key, timeline, start_segment, end_segment, finished_at}}' \"$RUNBOOK_DIR/${{{backup}#base/}}.manifest.json\"\n\
         # The newest WAL the archive holds (the newest folder, then its newest segments):\n\
         keys \"${id}_store/wal\" | sort | tail -n 3"
    ));
    s.check("every segment from the backup's `start_segment` to the newest one is in `wal/` (no gap in the names)");
    s.check("the newest segment is recent enough for the RPO (`zstd -dc` it into a file and read its last commit with `pg_waldump FILE | grep COMMIT | tail -n 1`)");
}

pub(super) fn backup(step: &Step, backup: &Backup, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    let database = ctx.w(&backup.database);
    let store = ctx.w(&backup.store);
    ctx.uses(&["pg", "put", "fail"]);
    if backup.format == DumpFormat::Base {
        s.text(
            "A physical base backup for point-in-time recovery, beside the WAL archive. drillbook \
             streams `pg_basebackup -X none` as a tar through zstd into `base/TIME.tar.zst` and writes \
             a manifest of its own (the WAL range from pg_basebackup's `backup_manifest`) that only \
             drillbook writes. By hand, the closest is a self-contained base backup (it carries its \
             own WAL, so it restores without the archive) copied into the store:",
        );
        s.sh(format!(
            "{id}_dir=\"$RUNBOOK_DIR/base-$(date -u +%Y%m%dT%H%M%SZ)\"\n\
             pg {database} pg_basebackup --pgdata=\"${id}_dir\" --format=tar --wal-method=stream --checkpoint=fast --no-password\n\
             tar -C \"${id}_dir\" -cf - . | zstd -q -3 > \"${id}_dir.tar.zst\"\n\
             put {store} \"base-by-hand/$(basename \"${id}_dir\").tar.zst\" \"${id}_dir.tar.zst\""
        ));
        s.check("pg_basebackup ended without an error, and the object is in the store");
        return;
    }
    let key = ctx.sets(id, "key");
    let sha256 = ctx.sets(id, "sha256");
    let size = ctx.sets(id, "size");
    let taken_at = ctx.sets(id, "taken_at");
    let compression = backup.compression.unwrap_or_default();
    let zstd = compression == DumpCompression::Zstd;
    let directory = backup.format == DumpFormat::Directory;
    let extra: String = backup
        .pg_dump_args
        .iter()
        .map(|a| format!(" {}", ctx.w(a)))
        .collect();
    s.text(format!(
        "`pg_dump --format={}` of the database into the store as `TIME.dump`{}, its SHA-256 and size \
         in a manifest written last (a backup without its manifest counts as incomplete). drillbook \
         counts every table's rows in the dump's own snapshot; by hand they are counted right after \
         the dump, so on a busy database they may differ a little from what the dump holds.",
        if directory { "directory (then tar)" } else { "custom" },
        if zstd {
            ", compressed with zstd on the way (`compressed_with: zstd`)"
        } else {
            ""
        }
    ));
    let dump = if directory {
        format!(
            "pg {database} pg_dump --format=directory --jobs={} --compress={} --no-password{extra} --file=\"$RUNBOOK_DIR/{id}.dir\"\n\
             tar -C \"$RUNBOOK_DIR/{id}.dir\" -cf - .{}",
            backup.jobs.unwrap_or(1),
            compression.pg_dump_level(),
            if zstd { " | zstd -q -3" } else { "" }
        )
    } else {
        format!(
            "pg {database} pg_dump --format=custom --compress={} --no-password{extra}{}",
            compression.pg_dump_level(),
            if zstd { " | zstd -q -3" } else { "" }
        )
    };
    s.sh(format!(
        "{taken_at}=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)\n\
         {key}=\"$(date -u -d \"${taken_at}\" +%Y%m%dT%H%M%S.%3NZ).dump\"\n\
         {dump} > \"$RUNBOOK_DIR/${key}\"\n\
         {sha256}=$(sha256sum \"$RUNBOOK_DIR/${key}\" | cut -d' ' -f1)\n\
         {size}=$(stat -c %s \"$RUNBOOK_DIR/${key}\")\n\
         # Every table's exact row count (leaf tables, not those of extensions), for the manifest.\n\
         {id}_tables='[]'\n\
         while IFS=$'\\t' read -r schema table; do\n  \
         rows=$(sql {database} -v s=\"$schema\" -v t=\"$table\" <<'SQL'\n\
         SELECT count(*) FROM :\"s\".:\"t\";\n\
         SQL\n)\n  \
         {id}_tables=$(jq -c --arg s \"$schema\" --arg t \"$table\" --argjson r \"$rows\" '. + [{{schema: $s, table: $t, rows: $r}}]' <<<\"${id}_tables\")\n\
         done < <(sql {database} -F $'\\t' -c \"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \\\n  \
         WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \\\n  \
         AND n.nspname NOT LIKE 'pg\\\\_toast%' AND n.nspname NOT LIKE 'pg\\\\_temp%' AND NOT EXISTS (SELECT 1 FROM pg_depend d \\\n  \
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2\")\n\
         jq -n --arg key \"${key}\" --arg sha256 \"${sha256}\" --argjson size \"${size}\" --argjson tables \"${id}_tables\" \\\n  \
         --arg database \"$(pg_database {database})\" --arg at \"${taken_at}\" \\\n  \
         --arg server \"$(sql {database} -c 'SHOW server_version' | cut -d' ' -f1)\" --arg pg_dump \"$(pg_dump --version | awk '{{print $NF}}')\" \\\n  \
         --argjson large_objects \"$(sql {database} -c 'SELECT count(*) FROM pg_largeobject_metadata')\" \\\n  \
         '{{manifest_version: 1, key: $key, size: $size, sha256: $sha256, format: \"{format}\", compression: {level},{compressed}\n    \
         database: $database, server_version: $server, pg_dump_version: $pg_dump, started_at: $at, snapshot_at: $at,\n    \
         finished_at: (now | todate), tables: $tables, large_objects: $large_objects, created_by: \"a runbook, by hand\"}}' \\\n  \
         > \"$RUNBOOK_DIR/${key}.manifest.json\"\n\
         put {store} \"${key}\" \"$RUNBOOK_DIR/${key}\"\n\
         put {store} \"${key}.manifest.json\" \"$RUNBOOK_DIR/${key}.manifest.json\"   # last: now it counts",
        format = if directory { "directory" } else { "custom" },
        level = compression.pg_dump_level(),
        compressed = if zstd { " compressed_with: \"zstd\"," } else { "" },
    ));
    if let Some(age) = backup.prune_older_than {
        ctx.uses(&["keys"]);
        s.text(format!(
            "Retention: backups taken more than {age} ago are removed from the store, manifest first (a \
             half-removed backup is incomplete, never mistaken for a good one); the newest complete one \
             is always kept. drillbook does it after each backup; by hand, list them and remove the old ones \
             (`aws s3 rm` or `rm`), manifest first:"
        ));
        s.sh(format!(
            "keys {store} | grep -E '\\.dump$' | sort | awk -v cut=\"$(date -u -d '-{} seconds' +%Y%m%dT%H%M%S)\" '$0 < cut'",
            age.0.as_secs()
        ));
    }
    s.check(format!(
        "the store holds `${key}` and `${key}.manifest.json`, and the object's size is `${size}` bytes"
    ));
}

pub(super) fn restore(step: &Step, restore: &Restore, ctx: &mut Ctx, s: &mut Section) {
    let id = &step.id;
    let key = ctx.w(&restore.backup);
    if restore.engine == Engine::Pgbackrest {
        let stanza = ctx.w(restore.stanza.as_deref().unwrap_or_default());
        s.text("pgBackRest restores its own backups: into an empty data directory (or `--delta` over a stopped one), then the server is started and recovers from the archive.");
        s.sh(format!(
            "pgbackrest --stanza={stanza} --set={key} --type=immediate --target-action=promote restore"
        ));
        s.check("the server started and left recovery (`SELECT pg_is_in_recovery()` is `f`)");
        return;
    }
    let store = ctx.w(&restore.store);
    if restore.recovery_target.is_some() || restore.database.is_some() {
        point_in_time(id, restore, &key, &store, ctx, s);
        return;
    }
    ctx.uses(&["fetch", "fail", "pg"]);
    s.text(
        "First the backup, checked: its manifest read, the dump downloaded and its size and SHA-256 \
         compared with the manifest's **before anything touches the target** (pg_restore restores some \
         corrupt archives without a word). A zstd-compressed dump (`compressed_with: zstd`, the \
         default) is decompressed with `zstd -d`; a directory-format backup is a tar to unpack.",
    );
    s.sh(format!(
        "{id}_backup={key}\n{id}_store={store}\n\
         {id}_manifest=\"$RUNBOOK_DIR/${id}_backup.manifest.json\"\n\
         fetch \"${id}_store\" \"${id}_backup.manifest.json\" \"${id}_manifest\" || fail \"${id}_backup has no manifest: an incomplete backup is never restored\"\n\
         fetch \"${id}_store\" \"${id}_backup\" \"$RUNBOOK_DIR/${id}_backup\"\n\
         [ \"$(stat -c %s \"$RUNBOOK_DIR/${id}_backup\")\" = \"$(jq -r .size \"${id}_manifest\")\" ] ||\n  \
         fail \"${id}_backup's size differs from its manifest's: the backup is corrupt (the target was not touched)\"\n\
         echo \"$(jq -r .sha256 \"${id}_manifest\")  $RUNBOOK_DIR/${id}_backup\" | sha256sum --check --quiet ||\n  \
         fail \"${id}_backup's SHA-256 differs from its manifest's: the backup is corrupt (the target was not touched)\"\n\
         {id}_input=\"$RUNBOOK_DIR/{id}.archive\"\n\
         case \"$(jq -r '.compressed_with // \"none\"' \"${id}_manifest\")\" in\n  \
         zstd) zstd -d -q -f \"$RUNBOOK_DIR/${id}_backup\" -o \"${id}_input\" ;;\n  \
         none) cp \"$RUNBOOK_DIR/${id}_backup\" \"${id}_input\" ;;   # gzip inside the archive, if any, pg_restore undoes\n  \
         *) fail \"${id}_backup is compressed in a way this runbook does not know\" ;;\n\
         esac\n\
         if [ \"$(jq -r .format \"${id}_manifest\")\" = directory ]; then\n  \
         mkdir -p \"$RUNBOOK_DIR/{id}.dir\" && tar -C \"$RUNBOOK_DIR/{id}.dir\" -xf \"${id}_input\" && {id}_input=\"$RUNBOOK_DIR/{id}.dir\"\n\
         fi"
    ));
    let flags: Vec<String> = restore
        .flags
        .clone()
        .unwrap_or_else(|| {
            ["--clean", "--if-exists", "--no-owner"]
                .map(String::from)
                .to_vec()
        })
        .iter()
        .map(|f| quote(f))
        .collect();
    let jobs = restore.jobs.unwrap_or(1).max(1);
    let allowed = restore
        .allow_errors
        .iter()
        .map(|p| format!(" -e {}", quote(p)))
        .collect::<String>();
    // Errors pg_restore reported that `allow_errors` does not cover fail the restore; a failed
    // exit with none reported fails it too.
    let judge = |into: &str| {
        format!(
            "{id}_status=0\n\
             pg \"${id}_url\" pg_restore {} --jobs={jobs} --dbname=\"{into}\" --no-password \"${id}_input\" \\\n  \
             2> \"$RUNBOOK_DIR/{id}.pg_restore.log\" || {id}_status=$?\n\
             {id}_errors=$(sed -n 's/^pg_restore: error: //p' \"$RUNBOOK_DIR/{id}.pg_restore.log\")\n\
             {id}_refused=$(printf '%s\\n' \"${id}_errors\" | sed '/^$/d'{})\n\
             [ -z \"${id}_refused\" ] || {{ printf '%s\\n' \"${id}_refused\" >&2; fail \"pg_restore reported errors allow_errors does not cover\"; }}\n\
             [ \"${id}_status\" = 0 ] || [ -n \"${id}_errors\" ] || fail \"pg_restore failed (exit ${id}_status): see $RUNBOOK_DIR/{id}.pg_restore.log\"",
            flags.join(" "),
            if allowed.is_empty() {
                String::new()
            } else {
                format!(" | grep -Ev{allowed} || true")
            }
        )
    };
    let allow_note = if restore.allow_errors.is_empty() {
        String::new()
    } else {
        format!(
            " Errors matching {} (as extended regular expressions) are allowed; any other fails the restore.",
            restore
                .allow_errors
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };

    let target_text = restore.target.trim();
    if target_text == EPHEMERAL {
        ctx.uses(&["rows_match"]);
        s.text(format!(
            "Into a throwaway cluster of its own (`target: ephemeral`): `initdb` and `pg_ctl` from the newest \
             installed PostgreSQL server programs, on a free port of 127.0.0.1, trusting local connections \
             (as root, run them as the `postgres` user: `runuser -u postgres -- …`, with the directory \
             theirs). Remove it when you are done.{allow_note}"
        ));
        s.sh(format!(
            "PG_BIN=\"${{PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}}\"\n\
             {id}_port=\"${{{id}_port:-54329}}\"\n\
             \"$PG_BIN/initdb\" --pgdata=\"$RUNBOOK_DIR/{id}.cluster\" --username=postgres --auth=trust >/dev/null\n\
             \"$PG_BIN/pg_ctl\" --pgdata=\"$RUNBOOK_DIR/{id}.cluster\" --log=\"$RUNBOOK_DIR/{id}.cluster.log\" --wait \\\n  \
             --options=\"-p ${id}_port -c listen_addresses=127.0.0.1 -k $RUNBOOK_DIR -c fsync=off\" start\n\
             {id}_url=\"postgres://postgres@127.0.0.1:${id}_port/$(jq -r .database \"${id}_manifest\")\"\n\
             sql \"${id}_url\" -d postgres -v db=\"$(jq -r .database \"${id}_manifest\")\" <<'SQL'\n\
             SELECT format('CREATE DATABASE %I', :'db') \\gexec\n\
             SQL\n{}\n\
             rows_match \"${id}_url\" \"$(pg_database \"${id}_url\")\" \"${id}_manifest\"\n\
             objects_match \"${id}_url\" \"$(pg_database \"${id}_url\")\" \"${id}_manifest\"\n\
             # When you are done with it: \"$PG_BIN/pg_ctl\" --pgdata=\"$RUNBOOK_DIR/{id}.cluster\" stop",
            judge("$(pg_database \"${id}_url\")")
        ));
        let target = ctx.sets(id, "target");
        s.sh(format!("{target}=\"${id}_url\""));
        s.check("pg_restore reported no error beyond the allowed ones, and every table's row count and the large objects match the manifest");
        return;
    }

    let url = ctx.w(&restore.target);
    ctx.uses(&["rows_match"]);
    if restore.in_place {
        s.text(format!(
            "Straight into the target database (`in_place: true`: no scratch database, no swap). A \
             failed restore leaves it partly restored.{allow_note}"
        ));
        s.sh(format!(
            "{id}_url={url}\n{id}_db=$(pg_database \"${id}_url\")\n\
             sql \"${id}_url\" -d postgres -v db=\"${id}_db\" <<'SQL'\n\
             SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \\gexec\n\
             SQL\n{}",
            judge(&format!("${id}_db"))
        ));
    } else {
        s.text(
            "Then the restore, which never leaves the target half-restored: into a new **scratch \
             database** on the target's server, checked there, then swapped in by two renames in one \
             transaction, so the target is either as it was or wholly the restored copy. The database \
             it replaces is kept as `<db>_before_<time>`. Renaming needs nobody connected to the target, \
             a role with `CREATEDB` that owns the target (or is a member of its owner), and the \
             server's `postgres` database to work from.",
        );
        s.sh(format!(
            "{id}_url={url}\n{id}_db=$(pg_database \"${id}_url\")\n\
             {id}_scratch=\"${{{id}_db:0:36}}_restore_runbook\"\n\
             {id}_previous=\"${{{id}_db:0:36}}_before_$(date -u +%Y%m%d_%H%M%S)\"\n\
             {id}_open=$(sql \"${id}_url\" -d postgres -v db=\"${id}_db\" <<'SQL'\n\
             SELECT count(*) FROM pg_stat_activity WHERE datname = :'db' AND pid <> pg_backend_pid()\n   \
             AND backend_type IS DISTINCT FROM 'autovacuum worker';\n\
             SQL\n)\n\
             [ \"${id}_open\" = 0 ] || fail \"${id}_db has ${id}_open open session(s): the swap renames it, which needs nobody connected (stop the application, or end them with pg_terminate_backend); nothing was changed\"\n\
             # A scratch database like the target (encoding, locale), empty; one a failed attempt left goes first.\n\
             sql \"${id}_url\" -d postgres -v db=\"${id}_db\" -v scratch=\"${id}_scratch\" <<'SQL'\n\
             SET client_min_messages = warning;\n\
             DROP DATABASE IF EXISTS :\"scratch\";\n\
             SELECT format('CREATE DATABASE %I TEMPLATE template0 ENCODING %L LC_COLLATE %L LC_CTYPE %L',\n              \
             :'scratch', pg_encoding_to_char(encoding), datcollate, datctype)\n  \
             FROM pg_database WHERE datname = :'db'\n\
             UNION ALL\n\
             SELECT format('CREATE DATABASE %I TEMPLATE template0', :'scratch')\n \
             WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \\gexec\n\
             SQL"
        ));
        s.text(format!(
            "`pg_restore {}` into the scratch database ({jobs} job{}), the connection in libpq's environment.{allow_note} \
             If anything from here to the swap fails, the target is untouched: drop the scratch database \
             (`DROP DATABASE` it) and find out why.",
            restore
                .flags
                .as_ref()
                .map(|f| f.join(" "))
                .unwrap_or_else(|| "--clean --if-exists --no-owner".into()),
            if jobs == 1 { "" } else { "s" }
        ));
        s.sh(judge(&format!("${id}_scratch")));
    }
    let into = if restore.in_place {
        format!("${id}_db")
    } else {
        format!("${id}_scratch")
    };
    if restore.row_counts {
        s.text("The restored copy against the manifest: every table's row count, and the large objects.");
        s.sh(format!(
            "rows_match \"${id}_url\" \"{into}\" \"${id}_manifest\"\n\
             objects_match \"${id}_url\" \"{into}\" \"${id}_manifest\""
        ));
    }
    if !restore.in_place {
        s.text(
            "The swap. The scratch database gets the target's owner first (drillbook also carries over \
             the target's database-level GRANTs, `ALTER DATABASE … SET` settings, connection limit and \
             comment: if the target has any, `\\l+` and `\\drds` in psql show them; give them to the new \
             one the same way). Then both renames, in one transaction.",
        );
        s.sh(format!(
            "sql \"${id}_url\" -d postgres -v db=\"${id}_db\" -v scratch=\"${id}_scratch\" -v previous=\"${id}_previous\" <<'SQL'\n\
             SELECT format('ALTER DATABASE %I OWNER TO %I', :'scratch', pg_get_userbyid(datdba))\n  \
             FROM pg_database WHERE datname = :'db' \\gexec\n\
             BEGIN;\n\
             SELECT format('ALTER DATABASE %I RENAME TO %I', :'db', :'previous')\n  \
             FROM pg_database WHERE datname = :'db' \\gexec\n\
             ALTER DATABASE :\"scratch\" RENAME TO :\"db\";\n\
             COMMIT;\n\
             SQL\n\
             echo \"swapped: ${id}_db is the restored copy; the one it replaced is ${id}_previous\"\n\
             echo \"to roll back: ALTER DATABASE \\\"${id}_db\\\" RENAME TO \\\"${{{id}_db:0:36}}_restored_$(date -u +%Y%m%d_%H%M%S)\\\"; ALTER DATABASE \\\"${id}_previous\\\" RENAME TO \\\"${id}_db\\\";\""
        ));
        if restore.keep_previous != 1 {
            s.text(format!(
                "Keep the {} newest `<db>_before_<time>` databases and drop older ones you made (`keep_previous: {}`).",
                restore.keep_previous, restore.keep_previous
            ));
        } else {
            s.text("Keep `<db>_before_<time>` until the service is back and checked; drillbook drops older ones of earlier restores (`keep_previous: 1`).");
        }
    }
    let target = ctx.sets(id, "target");
    let database = ctx.sets(id, "database");
    let backup = ctx.sets(id, "backup");
    s.sh(format!(
        "{target}=\"${id}_url\"\n{database}=\"${id}_db\"\n{backup}=\"${id}_backup\""
    ));
    s.check(
        "pg_restore reported no error beyond the allowed ones (`$RUNBOOK_DIR/".to_string()
            + id
            + ".pg_restore.log`)",
    );
    s.check(
        "every table's row count and the large objects match the manifest (the lines above say so)",
    );
    if !restore.in_place {
        s.check(format!(
            "`\\l` in psql lists `${id}_db` (the restored copy) and `${id}_previous` (the one it replaced), and no `…_restore_runbook` database"
        ));
    }
}

/// A base backup restored into a throwaway cluster and recovered from the archive.
fn point_in_time(
    id: &str,
    restore: &Restore,
    key: &str,
    store: &str,
    ctx: &mut Ctx,
    s: &mut Section,
) {
    ctx.uses(&["fetch", "fail", "pg"]);
    let recovery = restore
        .recovery_target
        .as_deref()
        .map(|t| ctx.prose(t))
        .unwrap_or_else(|| "latest".into());
    let database = restore
        .database
        .as_deref()
        .map(|d| ctx.w(d))
        .unwrap_or_else(|| "postgres".into());
    s.text(format!(
        "A base backup, recovered from the WAL archive into a throwaway cluster (never over a \
         server's data), to `{recovery}`: the tar checked against its manifest's SHA-256 and unpacked, \
         `pg_verifybackup` run over it, then PostgreSQL started with a `restore_command` that reads the \
         archive (each WAL object is one zstd stream that `zstd -d` reads as it is: its header is a \
         skippable frame), `archive_mode = off` (a restored copy must never push into the archive) \
         and `recovery_target_action = 'promote'`. For a time, add `recovery_target_time = '…'` to \
         the settings below; for a named point, `recovery_target_name`."
    ));
    s.sh(format!(
        "{id}_backup={key}\n{id}_store={store}\n\
         fetch \"${id}_store\" \"${id}_backup.manifest.json\" \"$RUNBOOK_DIR/{id}.manifest.json\" || fail \"no manifest: never restored\"\n\
         fetch \"${id}_store\" \"${id}_backup\" \"$RUNBOOK_DIR/{id}.tar.zst\"\n\
         echo \"$(jq -r .sha256 \"$RUNBOOK_DIR/{id}.manifest.json\")  $RUNBOOK_DIR/{id}.tar.zst\" | sha256sum --check --quiet || fail \"the base backup is corrupt\"\n\
         PG_BIN=\"${{PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}}\"\n\
         {id}_data=\"$RUNBOOK_DIR/{id}.cluster\"; {id}_port=\"${{{id}_port:-54330}}\"\n\
         mkdir -m 700 \"${id}_data\" && zstd -dc \"$RUNBOOK_DIR/{id}.tar.zst\" | tar -C \"${id}_data\" -xf -\n\
         \"$PG_BIN/pg_verifybackup\" --no-parse-wal \"${id}_data\"\n\
         cat > \"$RUNBOOK_DIR/{id}.restore-wal\" <<EOF\n\
         #!/bin/sh\n\
         # restore_command: fetch WAL file \\$1 from the archive into \\$2\n\
         case \"\\$1\" in *.history) key=\"wal/\\$1.zst\" ;; *) key=\"wal/\\$(printf %.16s \"\\$1\")/\\$1.zst\" ;; esac\n\
         case \"${id}_store\" in\n  \
         s3://*) aws s3 cp --only-show-errors \"${id}_store/\\$key\" - | zstd -dcq > \"\\$2\" ;;\n  \
         *) zstd -dcq \"${id}_store/\\$key\" > \"\\$2\" ;;\n\
         esac\n\
         EOF\n\
         chmod +x \"$RUNBOOK_DIR/{id}.restore-wal\"\n\
         cat >> \"${id}_data/postgresql.auto.conf\" <<EOF\n\
         port = ${id}_port\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '$RUNBOOK_DIR'\n\
         archive_mode = off\nrestore_command = '$RUNBOOK_DIR/{id}.restore-wal %f %p'\n\
         recovery_target_timeline = 'latest'\nrecovery_target_action = 'promote'\nprimary_conninfo = ''\n\
         EOF\n\
         touch \"${id}_data/recovery.signal\"\n\
         \"$PG_BIN/pg_ctl\" --pgdata=\"${id}_data\" --log=\"$RUNBOOK_DIR/{id}.log\" --wait --timeout=3600 start\n\
         until [ \"$(pg \"postgres://postgres@127.0.0.1:${id}_port/postgres\" psql -XAtc 'SELECT pg_is_in_recovery()')\" = f ]; do sleep 2; done"
    ));
    let target = ctx.sets(id, "target");
    s.sh(format!(
        "{target}=\"postgres://postgres@127.0.0.1:${id}_port/\"{database}"
    ));
    s.check(format!(
        "the server log (`$RUNBOOK_DIR/{id}.log`) says where recovery stopped (`recovery stopping …` or `redo done at …`, then `database system is ready`), and a `restore_command` failure other than for the file after the last one is not among its lines"
    ));
}
