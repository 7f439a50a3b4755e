//! A real PostgreSQL cluster archives through `drillbook wal push` and a second one, made from
//! its base backup, recovers through `drillbook wal fetch`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{common, file};

/// The postgres OS user's uid and gid: the server's files must be its own.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let output = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u32>()
            .expect("the postgres OS user")
    };
    (id("-u"), id("-g"))
}

/// The newest installed server programs' directory (TESTING.md).
fn server_bin() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    PathBuf::from(format!(
        "/usr/lib/postgresql/{}/bin",
        versions.last().expect("a PostgreSQL version")
    ))
}

/// Runs a server program as the postgres OS user; panics with its output on failure.
fn as_postgres(program: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runuser");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{program:?} {args:?}: {text}");
    text
}

/// A data directory stopped by `pg_ctl stop` when the test ends, however it ends.
struct Server {
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(server_bin().join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A primary archives through `drillbook wal push` (store in the command's environment); a
/// second cluster made from its pg_basebackup (`-X none`: every WAL record from the archive)
/// replays through `drillbook wal fetch` (store in a config file) and has the row written
/// after the backup.
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_archives_through_push_and_recovers_through_fetch() {
    use drillbook::connect::cluster::Cluster;
    use std::os::unix::fs::PermissionsExt;

    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let (uid, gid) = postgres_ids();
    let store = base.path().join("archive");
    std::fs::create_dir(&store).unwrap();
    std::os::unix::fs::chown(&store, Some(uid), Some(gid)).unwrap();
    let binary = common::binary();
    // The archiver runs drillbook as postgres: every directory above it must let it through.
    for dir in binary.ancestors().skip(1) {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert!(
            mode & 0o001 != 0,
            "{} is closed to the postgres user",
            dir.display()
        );
    }
    let config = file(
        base.path(),
        "wal.conf",
        format!("DRILLBOOK_WAL_STORE={}\n", store.display()).as_bytes(),
    );

    let primary = Cluster::create(base.path(), "primary", Some(15))
        .await
        .expect("a throwaway cluster");
    let _primary_guard = Server {
        data: primary.dir.join("data"),
    };
    let conf = primary.dir.join("data/postgresql.conf");
    let mut settings = std::fs::read_to_string(&conf).unwrap();
    settings.push_str(&format!(
        "\narchive_mode = on\narchive_command = 'DRILLBOOK_WAL_STORE={} {} wal push %p'\n",
        store.display(),
        binary.display()
    ));
    std::fs::write(&conf, settings).unwrap();
    let data = primary.dir.join("data");
    let log = primary.dir.join("log");
    as_postgres(
        &server_bin().join("pg_ctl"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-m",
            "fast",
            "restart",
        ],
    );
    let url = primary.url("postgres");
    let sql = |sql: &str| common::pg::psql_url(&url, sql);
    assert_eq!(sql("SHOW archive_mode"), "on");
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
    let port = primary.port.to_string();
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
    let switched = sql("SELECT pg_walfile_name(pg_switch_wal())");
    wait_until(
        "the switched segment is archived",
        Duration::from_secs(60),
        || {
            sql(&format!(
                "SELECT coalesce(last_archived_wal, '') >= '{switched}' FROM pg_stat_archiver"
            )) == "t"
        },
    );
    assert_eq!(sql("SELECT failed_count FROM pg_stat_archiver"), "0");
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
