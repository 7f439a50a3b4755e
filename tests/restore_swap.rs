//! A restore into a PostgreSQL database goes into a scratch database and is swapped in by
//! renaming: a failed or refused restore leaves the target byte for byte as it was (its
//! schema as pg_dump prints it, every table's content hash, its oid), and a successful one
//! keeps the database it replaced under a name that the documented rollback uses. Everything
//! is checked independently with psql and pg_dump. Interruptions: restore_interrupted.rs.

mod common;

use std::path::{Path, PathBuf};

use common::pg::{TestDb, psql};
use common::swap::{
    Role, backed_up, backup, beside, evidence, fingerprint, output_of, restore, target,
};

/// The reported case: a backup of `users` (50,000 rows, granted to a role that no longer
/// exists where it is restored, so pg_restore errors) and `orders`, and a target holding one
/// user, one order and a view over `users`. Returns the role too, for the guard's order.
fn reported_case(dir: &Path) -> (Role, TestDb, TestDb, PathBuf, String) {
    let role = Role::create("dbk_gone", "");
    let source = TestDb::create("dbk_src");
    source.psql(&format!(
        "CREATE TABLE users (id int PRIMARY KEY, name text);
         INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 50000) i;
         CREATE TABLE orders (id int PRIMARY KEY, user_id int);
         INSERT INTO orders SELECT i, 1 + i % 50000 FROM generate_series(1, 2000) i;
         GRANT SELECT ON users TO {}",
        role.0
    ));
    let (store, key) = backup(dir, &source);
    source.psql(&format!("REVOKE ALL ON users FROM {}", role.0));
    psql("postgres", &format!("DROP ROLE {}", role.0));
    let target = TestDb::create("dbk_target");
    target.psql(
        "CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users VALUES (0, 'only');
         CREATE TABLE orders (id int PRIMARY KEY, user_id int); INSERT INTO orders VALUES (7, 0);
         CREATE VIEW named_users AS SELECT name FROM users",
    );
    (role, source, target, store, key)
}

#[test]
fn a_failed_restore_leaves_the_target_byte_identical_and_drops_its_scratch_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_role, _source, target, store, key) = reported_case(dir.path());
    let before = fingerprint(&target);

    let (output, restore_step) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(fingerprint(&target), before, "the target changed");
    assert_eq!(target.psql("SELECT count(*) FROM users"), "1");
    assert!(beside(&target, "restore_").is_empty());
    assert!(beside(&target, "before_").is_empty());
    let message = restore_step["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with("pg_restore reported 1 error(s) not allowed by allow_errors; "),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "{} was not touched and the scratch database {}_restore_",
            target.name, target.name
        )),
        "{message}"
    );
    assert!(message.ends_with("was dropped"), "{message}");
}

/// The check above notices what the old way did: restoring in place fails on the view and
/// replaces `orders` and fills `users` anyway.
#[test]
fn in_place_restores_into_the_target_itself_and_a_failure_leaves_it_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_role, _source, target, store, key) = reported_case(dir.path());
    let before = fingerprint(&target);

    let (output, restore_step) =
        restore(dir.path(), &store, &key, &target.url(), &["in_place: true"]);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let message = restore_step["error"].as_str().unwrap_or_default();
    assert!(message.contains("is partly restored"), "{message}");
    assert_ne!(fingerprint(&target), before);
    assert_eq!(target.psql("SELECT count(*) FROM orders"), "2000");
    assert!(beside(&target, "restore_").is_empty());
}

#[test]
fn a_restored_copy_that_differs_from_the_manifest_is_never_swapped_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, store, key) = backed_up(dir.path(), 3_000);
    // The manifest promises one order more than the dump holds.
    let manifest = store.join(format!("{key}.manifest.json"));
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
    for table in json["tables"].as_array_mut().expect("tables") {
        if table["table"] == "orders" {
            table["rows"] = (table["rows"].as_u64().expect("rows") + 1).into();
        }
    }
    std::fs::write(&manifest, serde_json::to_vec(&json).expect("JSON")).expect("manifest");
    let target = target();
    let before = fingerprint(&target);

    let (output, restore_step) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let message = restore_step["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "the restored copy differs from the backup's manifest: shop.orders has 1500 rows, the backup 1501; "
        ),
        "{message}"
    );
    assert_eq!(fingerprint(&target), before);
    assert!(beside(&target, "restore_").is_empty());
}

/// The database's own properties, as the application sees them.
fn properties(name: &str) -> String {
    psql(
        "postgres",
        &format!(
            "SELECT pg_get_userbyid(d.datdba), d.datconnlimit, d.encoding, d.datcollate,
                    (SELECT array_agg(x ORDER BY x) FROM (
                       SELECT format('%s %s %s', a.grantee::regrole, a.privilege_type,
                                     a.is_grantable) x
                         FROM aclexplode(d.datacl) a) grants),
                    (SELECT array_agg(x ORDER BY x) FROM (
                       SELECT format('%s %s', s.setrole, s.setconfig) x
                         FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) settings)
               FROM pg_database d WHERE datname = '{name}'"
        ),
    )
}

fn comment(name: &str) -> String {
    psql(
        "postgres",
        &format!(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'"
        ),
    )
}

#[test]
fn a_restore_swaps_keeps_the_previous_database_and_the_documented_rollback_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reader = Role::create("dbk_reader", "");
    let (source, store, key) = backed_up(dir.path(), 5_000);
    let target = TestDb::create("dbk_target");
    let t = &target.name;
    target.psql("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)");
    psql(
        "postgres",
        &format!(
            "REVOKE CONNECT ON DATABASE {t} FROM PUBLIC; GRANT CONNECT ON DATABASE {t} TO {r};
             ALTER DATABASE {t} SET search_path TO \"$user\", public, shop;
             ALTER ROLE {r} IN DATABASE {t} SET statement_timeout TO '5s';
             ALTER DATABASE {t} CONNECTION LIMIT 40;
             COMMENT ON DATABASE {t} IS 'the app''s database'",
            r = reader.0
        ),
    );
    let before = properties(t);

    let (output, restore_step) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let previous = output_of(&restore_step, "previous_database");
    let scratch = output_of(&restore_step, "scratch_database");
    assert!(previous.starts_with(&format!("{t}_before_")), "{previous}");
    assert!(scratch.starts_with(&format!("{t}_restore_")), "{scratch}");
    assert_eq!(beside(&target, "before_"), std::slice::from_ref(&previous));
    assert!(beside(&target, "restore_").is_empty());
    // The target holds the backup, with the properties it had; the previous one what it held.
    assert_eq!(target.row_counts(), source.row_counts());
    assert_eq!(
        target.psql("SELECT count(*) FROM pg_largeobject_metadata"),
        "2"
    );
    assert_eq!(properties(t), before);
    assert_eq!(comment(t), "the app's database");
    assert_eq!(psql(&previous, "SELECT id FROM keep_me"), "7");
    let lines = evidence(&restore_step);
    assert!(
        lines.contains(&format!(
            "swapped in one transaction: {t} renamed to {previous}, {scratch} renamed to {t}"
        )),
        "{lines:#?}"
    );
    let rollback = lines
        .iter()
        .find_map(|line| line.strip_prefix("to roll back: "))
        .unwrap_or_else(|| panic!("no rollback in {lines:#?}"))
        .to_string();
    assert!(rollback.contains(&format!("ALTER DATABASE \"{previous}\" RENAME TO \"{t}\";")));

    // The rollback, as documented: the old database is the target again.
    psql("postgres", &rollback);
    assert_eq!(target.psql("SELECT id FROM keep_me"), "7");
    assert_eq!(properties(t), before);
    assert_eq!(beside(&target, "restored_").len(), 1);

    // Two more restores: the rolled-back database's comment comes back unmarked, and only
    // the newest previous database is kept (keep_previous: 1); the set-aside copy is not ours.
    let (second, second_step) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(second.status, 0, "{}", second.stdout);
    assert_eq!(comment(t), "the app's database");
    let kept = output_of(&second_step, "previous_database");
    let (third, third_step) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(third.status, 0, "{}", third.stdout);
    let newest = output_of(&third_step, "previous_database");
    assert_eq!(beside(&target, "before_"), std::slice::from_ref(&newest));
    assert_eq!(beside(&target, "restored_").len(), 1);
    assert!(
        evidence(&third_step).contains(&format!(
            "dropped 1 previous database(s) of {t} beyond keep_previous: 1: {kept}"
        )),
        "{:#?}",
        evidence(&third_step)
    );
    assert_eq!(target.row_counts(), source.row_counts());
}

#[test]
fn a_role_that_may_not_create_or_rename_databases_fails_before_anything_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weak = Role::create("dbk_weak", "LOGIN NOCREATEDB");
    let (source, store, key) = backed_up(dir.path(), 1_000);
    let target = target();
    psql(
        "postgres",
        &format!("ALTER DATABASE {} OWNER TO {}", target.name, weak.0),
    );
    let url = format!("postgres://{}@127.0.0.1:5432/{}", weak.0, target.name);
    let before = fingerprint(&target);

    let (output, refused) = restore(dir.path(), &store, &key, &url, &[]);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(
        refused["error"].as_str().unwrap_or_default(),
        format!(
            "restoring into {t} means creating a scratch database and renaming it into place, and the role {w} may not: it lacks CREATEDB (ALTER ROLE \"{w}\" CREATEDB); nothing was changed. Grant it, or set `in_place: true` to pg_restore into {t} itself (a failed restore then leaves it partly restored)",
            t = target.name,
            w = weak.0
        )
    );
    assert_eq!(refused["attempts"].as_array().map_or(1, Vec::len), 1);
    assert_eq!(fingerprint(&target), before);
    assert!(beside(&target, "restore_").is_empty());

    // CREATEDB without the target's ownership is not enough either.
    psql(
        "postgres",
        &format!(
            "ALTER ROLE {w} CREATEDB; ALTER DATABASE {t} OWNER TO postgres",
            w = weak.0,
            t = target.name
        ),
    );
    let (output, refused) = restore(dir.path(), &store, &key, &url, &[]);
    assert_eq!(output.status, 1, "{}", output.stdout);
    let message = refused["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "it lacks the ownership of {}, which postgres owns (GRANT \"postgres\" TO \"{}\")",
            target.name, weak.0
        )),
        "{message}"
    );
    assert!(beside(&target, "restore_").is_empty());

    // Both: the swap works for a role that is no superuser.
    psql(
        "postgres",
        &format!("ALTER DATABASE {} OWNER TO {}", target.name, weak.0),
    );
    let (output, swapped) = restore(dir.path(), &store, &key, &url, &[]);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(target.row_counts(), source.row_counts());
    let previous = swapped["outputs"]["previous_database"]
        .as_str()
        .expect("previous");
    assert_eq!(
        psql(
            "postgres",
            &format!(
                "SELECT string_agg(pg_get_userbyid(datdba)::text, ',') FROM pg_database
                  WHERE datname IN ('{}', '{previous}')",
                target.name
            )
        ),
        format!("{w},{w}", w = weak.0)
    );
}
