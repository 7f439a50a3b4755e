//! A real PostgreSQL cluster archives through `drillbook wal push` and a second one, made from
//! its base backup, recovers through `drillbook wal fetch`.

use std::time::Duration;

use super::{common, file};
use common::archiving::{
    ArchivingPrimary, Server, as_postgres, postgres_ids, server_bin, wait_until,
};

/// A primary archives through `drillbook wal push` (store in the command's environment); a
/// second cluster made from its pg_basebackup (`-X none`: every WAL record from the archive)
/// replays through `drillbook wal fetch` (store in a config file) and has the row written
/// after the backup.
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_archives_through_push_and_recovers_through_fetch() {
    use std::os::unix::fs::PermissionsExt;

    let primary = ArchivingPrimary::start().await;
    let base = &primary.base;
    let store = &primary.store;
    let (uid, gid) = postgres_ids();
    let binary = common::binary();
    let config = file(
        base.path(),
        "wal.conf",
        format!("DRILLBOOK_WAL_STORE={}\n", store.display()).as_bytes(),
    );
    let sql = |sql: &str| primary.sql(sql);
    sql("CREATE TABLE drill (id int, note text)");
    sql("INSERT INTO drill VALUES (1, 'before the base backup')");

    // The replica's directory, the server's user's own.
    let replica_dir = base.path().join("replica");
    std::fs::create_dir(&replica_dir).unwrap();
    std::fs::create_dir(replica_dir.join("socket")).unwrap();
    for dir in [&replica_dir, &replica_dir.join("socket")] {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let replica_data = replica_dir.join("data");
    let port = primary.cluster.port.to_string();
    as_postgres(
        &server_bin().join("pg_basebackup"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-D",
            replica_data.to_str().unwrap(),
            "-X",
            "none",
            "-c",
            "fast",
        ],
    );
    sql("INSERT INTO drill VALUES (2, 'after the base backup, before the switch')");
    let switched = primary.switch_and_archive();
    let archived: Vec<String> = std::fs::read_dir(store.join("wal/0000000100000000"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archived.contains(&format!("{switched}.zst")),
        "{archived:?}"
    );
    assert!(
        archived.iter().any(|name| name.ends_with(".backup.zst")),
        "{archived:?}"
    );
    eprintln!("archived by PostgreSQL: {archived:?}");

    // The second cluster: its own port and socket, archive_mode off (a drill must never push
    // a new timeline into production's archive), WAL only from the archive.
    let replica_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let replica_conf = replica_data.join("postgresql.conf");
    let mut settings = std::fs::read_to_string(&replica_conf).unwrap();
    settings.push_str(&format!(
        "\nport = {replica_port}\nunix_socket_directories = '{}'\narchive_mode = off\n\
         restore_command = '{} wal fetch --config {} %f %p'\n",
        replica_dir.join("socket").display(),
        binary.display(),
        config.display()
    ));
    std::fs::write(&replica_conf, settings).unwrap();
    let signal = replica_data.join("recovery.signal");
    std::fs::write(&signal, "").unwrap();
    std::os::unix::fs::chown(&signal, Some(uid), Some(gid)).unwrap();
    let replica_log = replica_dir.join("log");
    let _replica_guard = Server {
        data: replica_data.clone(),
    };
    as_postgres(
        &server_bin().join("pg_ctl"),
        &[
            "-D",
            replica_data.to_str().unwrap(),
            "-l",
            replica_log.to_str().unwrap(),
            "-w",
            "-t",
            "120",
            "start",
        ],
    );
    let replica_url = format!("postgres://postgres@127.0.0.1:{replica_port}/postgres");
    let replica_sql = |sql: &str| common::pg::psql_url(&replica_url, sql);
    wait_until("recovery ends", Duration::from_secs(120), || {
        replica_sql("SELECT pg_is_in_recovery()") == "f"
    });
    assert_eq!(
        replica_sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM drill"),
        "1,2"
    );
    let log = std::fs::read_to_string(&replica_log).unwrap();
    assert!(
        log.contains(&format!("restored log file \"{switched}\" from archive")),
        "{log}"
    );
    // The probes for history files that do not exist left nothing in the log.
    assert!(!log.contains("drillbook:"), "{log}");
}
