//! Throwaway PostgreSQL clusters, against this machine's real server programs (TESTING.md:
//! PostgreSQL's server programs are under /usr/lib/postgresql/<version>/bin).

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use drillbook::connect::cluster::{self, Cluster, ClusterError};
use tokio_postgres::NoTls;

/// A temporary base the server's OS user can reach: tempfile makes it 0700, owned by us.
fn base() -> tempfile::TempDir {
    let base = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711))
        .expect("open up the temporary directory");
    base
}

/// Stops and removes the cluster however the test ends, so no postmaster outlives it.
struct Guard(Cluster);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.destroy_blocking();
    }
}

async fn client(cluster: &Cluster) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&cluster.url("postgres"), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn postmaster_pid(cluster: &Cluster) -> i32 {
    let text =
        std::fs::read_to_string(cluster.dir.join("data/postmaster.pid")).expect("postmaster.pid");
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .expect("a pid on the first line")
}

/// Gone, or a zombie nobody has reaped yet: either way no longer running.
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
}

fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_cluster_serves_sql_survives_its_postmaster_being_killed_and_is_destroyed() {
    let base = base();
    let started = Instant::now();
    let cluster = Cluster::create(base.path(), "target", None)
        .await
        .expect("create");
    eprintln!("create: {:?}", started.elapsed());
    let guard = Guard(cluster.clone());
    assert_eq!(cluster.superuser, "postgres");
    assert_eq!(
        cluster.url("postgres"),
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port)
    );

    let db = client(&cluster).await.expect("connect");
    // Committed synchronously, so the rows are in the WAL when the postmaster is killed (the
    // cluster's own default, synchronous_commit=off, may lose the last moments in a crash).
    db.batch_execute(
        "SET synchronous_commit = on;
         CREATE TABLE drill (id int PRIMARY KEY, note text);
         INSERT INTO drill VALUES (1, 'one'), (2, 'two');",
    )
    .await
    .expect("create and insert");
    let count: i64 = db
        .query_one("SELECT count(*) FROM drill", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(count, 2);

    let found = Cluster::found(base.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].dir, cluster.dir);
    assert_eq!(found[0].port, cluster.port);
    let record = std::fs::read_to_string(cluster.dir.join("cluster.json")).expect("record");
    assert!(
        record.contains(&format!("\"pid\": {}", postmaster_pid(&cluster))),
        "{record}"
    );

    // A crash: the postmaster dies and leaves its postmaster.pid behind. The open session's
    // backend is left to notice on its own.
    let pid = postmaster_pid(&cluster);
    // SAFETY: kill only sends a signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    eventually("the killed postmaster is gone", || process_gone(pid));
    let pid_file = cluster.dir.join("data/postmaster.pid");
    let stale = std::fs::read_to_string(&pid_file).expect("postmaster.pid left behind");
    // As after a reboot: the PID it names now belongs to some other live process (this one).
    let reused = stale.replacen(&pid.to_string(), &std::process::id().to_string(), 1);
    std::fs::write(&pid_file, reused).expect("rewrite postmaster.pid");

    let found = Cluster::found(base.path()).remove(0);
    // Its port taken meanwhile: a clear refusal, not a new port behind the caller's back.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", found.port)).expect("take the port");
    let error = found.ensure_running().await.expect_err("port taken");
    assert!(matches!(error, ClusterError::PortTaken { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("port {} on 127.0.0.1 is taken", found.port))
    );
    drop(squatter);

    let started = Instant::now();
    found.ensure_running().await.expect("restart");
    eprintln!("ensure_running after kill -9: {:?}", started.elapsed());
    found.ensure_running().await.expect("already running");
    assert_ne!(postmaster_pid(&found), pid);
    let db = client(&found).await.expect("connect after restart");
    let notes: Vec<String> = db
        .query("SELECT note FROM drill ORDER BY id", &[])
        .await
        .expect("select after restart")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(notes, ["one", "two"]);
    drop(db);

    let pid = postmaster_pid(&found);
    let started = Instant::now();
    found.destroy().await.expect("destroy");
    eprintln!("destroy: {:?}", started.elapsed());
    assert!(!found.dir.exists());
    assert!(!accepts_connections(found.port));
    eventually("the stopped postmaster is gone", || process_gone(pid));
    found.destroy().await.expect("destroying twice is fine");
    let error = found.ensure_running().await.expect_err("gone");
    assert!(matches!(error, ClusterError::Gone(_)), "{error}");
    assert!(Cluster::found(base.path()).is_empty());
    drop(guard);
}

#[tokio::test]
async fn destroy_all_removes_every_cluster_under_the_base() {
    let base = base();
    let (first, second) = tokio::join!(
        Cluster::create(base.path(), "first", None),
        Cluster::create(base.path(), "second", None)
    );
    let _guards = (Guard(first.expect("first")), Guard(second.expect("second")));
    let ports: Vec<u16> = Cluster::found(base.path()).iter().map(|c| c.port).collect();
    assert_eq!(ports.len(), 2);
    assert_ne!(ports[0], ports[1]);
    assert!(ports.iter().all(|port| accepts_connections(*port)));

    let removed = cluster::destroy_all(base.path()).await;
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed[0].contains("/first"), "{removed:?}");
    assert!(removed[0].starts_with("PostgreSQL "), "{removed:?}");
    assert!(Cluster::found(base.path()).is_empty());
    assert!(!base.path().join("first").exists() && !base.path().join("second").exists());
    assert!(ports.iter().all(|port| !accepts_connections(*port)));
    assert!(cluster::destroy_all(base.path()).await.is_empty());
}

#[tokio::test]
async fn a_cancelled_create_leaves_nothing_behind() {
    let base = base();
    let create = Cluster::create(base.path(), "target", None);
    // initdb alone takes longer than this.
    let cancelled = tokio::time::timeout(Duration::from_millis(150), create).await;
    if let Ok(created) = cancelled {
        let _guard = created.map(Guard);
        panic!("create finished within 150ms: the test no longer cancels it midway");
    }
    let dir = base.path().join("target");
    assert!(!dir.exists());
    eventually("no process works in the cluster's directory", || {
        processes_in(&dir).is_empty()
    });
}

/// Processes whose working directory is under `dir` (initdb, postgres).
fn processes_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_failed_start_says_why_and_leaves_nothing_behind() {
    // A Unix socket path is limited to 107 bytes: under this base the server cannot start.
    let base = base();
    let deep = base.path().join("d".repeat(90));
    let error = Cluster::create(&deep, "target", None)
        .await
        .expect_err("the socket path is too long");
    let message = error.to_string();
    assert!(matches!(error, ClusterError::Failed { .. }), "{message}");
    assert!(
        message.starts_with("`pg_ctl start` failed (exit status: 1): "),
        "{message}"
    );
    assert!(message.contains("too long"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(!deep.join("target").exists());
    assert!(Cluster::found(&deep).is_empty());
}

#[tokio::test]
async fn refusals_come_before_anything_is_created() {
    let base = base();
    for name in ["", ".", "..", "a/b"] {
        let error = Cluster::create(base.path(), name, None)
            .await
            .expect_err("not a plain name");
        assert!(matches!(error, ClusterError::InvalidName(_)), "{error}");
    }
    std::fs::create_dir(base.path().join("taken")).expect("mkdir");
    let error = Cluster::create(base.path(), "taken", None)
        .await
        .expect_err("exists");
    assert!(matches!(error, ClusterError::Exists(_)), "{error}");
    assert!(base.path().join("taken").exists());

    assert!(Cluster::found(Path::new("/nonexistent/drillbook")).is_empty());
}

/// As root, a base the `postgres` user cannot enter (a state directory under /root) still
/// gets its cluster: it lives in the temporary directory, linked from the base.
#[tokio::test]
async fn a_base_closed_to_the_server_user_gets_a_cluster_elsewhere() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let private = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700))
        .expect("make the temporary directory private");
    let cluster = Cluster::create(private.path(), "target", None)
        .await
        .expect("a cluster outside the private base");
    let link = private.path().join("target");
    assert!(link.is_symlink());
    assert!(!cluster.dir.starts_with(private.path()));
    let found = Cluster::found(private.path());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].dir, cluster.dir);
    let (client, connection) = tokio_postgres::connect(&cluster.url("postgres"), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.expect("query");
    let removed = drillbook::connect::cluster::destroy_all(private.path()).await;
    assert_eq!(removed.len(), 1);
    assert!(!cluster.dir.exists());
    assert!(!link.exists() && !link.is_symlink(), "the link goes too");
}
