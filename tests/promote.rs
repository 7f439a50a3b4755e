//! `promote` repoints the application at the recovered database: it rewrites DATABASE_URL in
//! an env file (atomically, the previous file kept) or sends it to an HTTP secret endpoint. The
//! `standby` method, against this machine's PostgreSQL (a primary), must not promote again.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{Drillbook, journal, only_run};

const OLD_ENV: &str = "# written by the deploy job\nRAILS_ENV=production\nDATABASE_URL=postgres://old:oldpw@a/b\n\nREDIS_URL=redis://cache.internal:6379/0\n";
const NEW_URL: &str = "postgres://app:newpw@db2.internal:6432/orders";

/// drillbook in the test's directory (kept alive by the caller) with `RESTORE_URL` set to the
/// new URL.
fn with_restore_url(test: &Drillbook) -> Drillbook {
    Drillbook::in_dir(test.dir()).env("RESTORE_URL", NEW_URL)
}

/// The step `id` of the run's JSON report, and the whole report as text.
fn reported_step(dir: &Path, id: &str) -> (serde_json::Value, String) {
    let run = only_run(dir);
    let output = Drillbook::in_dir(dir)
        .args(&["report", &run, "--format", "json"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let report: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON report");
    let step = report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .cloned()
        .expect("the step in the report");
    (step, output.stdout)
}

fn repoint_playbook(extra: &str) -> String {
    format!(
        r#"version: 1
name: repoint
secrets: [RESTORE_URL]
steps:
  - id: repoint
    kind: promote
    method: repoint
    url: "{{{{ secrets.RESTORE_URL }}}}"
    env_file: app.env
{extra}"#
    )
}

#[test]
fn repoint_rewrites_only_the_variable_and_keeps_the_previous_file() {
    let test = Drillbook::new()
        .playbook("p.yaml", &repoint_playbook("    live_only: false\n"))
        .file("app.env", OLD_ENV.as_bytes());
    let dir = test.dir().to_path_buf();
    let env_file = dir.join("app.env");
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let output = with_restore_url(&test)
        .args(&["run", "p.yaml"])
        .expect_status(0)
        .run();

    assert_eq!(
        std::fs::read_to_string(&env_file).expect("env file"),
        OLD_ENV.replace("postgres://old:oldpw@a/b", NEW_URL)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app.env.previous")).expect("previous file"),
        OLD_ENV
    );
    let mode = std::fs::metadata(&env_file)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "permissions kept");
    // No temporary file left behind.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("app.env"))
        .collect();
    names.sort();
    assert_eq!(names, ["app.env", "app.env.previous"]);

    let (step, report) = reported_step(&dir, "repoint");
    assert_eq!(step["status"], "succeeded");
    assert_eq!(step["outputs"]["previous"], "postgres://old:***@a:5432/b");
    assert_eq!(
        step["outputs"]["current"],
        "postgres://app:***@db2.internal:6432/orders"
    );
    let evidence = step["evidence"].to_string();
    assert!(
        evidence
            .contains("postgres://old:***@a:5432/b -> postgres://app:***@db2.internal:6432/orders"),
        "{evidence}"
    );
    assert!(evidence.contains("app.env.previous"), "{evidence}");
    let records = serde_json::to_string(&journal(&dir, &only_run(&dir))).expect("journal");
    for text in [output.stdout, output.stderr, report, records] {
        assert!(!text.contains("oldpw"), "{text}");
        assert!(!text.contains("newpw"), "{text}");
    }
}

#[test]
fn promote_is_live_only_unless_it_says_otherwise() {
    let test = Drillbook::new()
        .playbook("p.yaml", &repoint_playbook(""))
        .file("app.env", OLD_ENV.as_bytes());
    let dir = test.dir().to_path_buf();
    with_restore_url(&test)
        .args(&["run", "p.yaml"])
        .expect_status(0)
        .run();
    let (step, _) = reported_step(&dir, "repoint");
    assert_eq!(step["status"], "skipped");
    assert_eq!(
        step["skipped_reason"],
        "live-only: a drill does not run it (use --mode incident or live)"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app.env")).expect("env file"),
        OLD_ENV
    );
    assert!(!dir.join("app.env.previous").exists());
}

/// In an incident with nobody at a terminal, a live-only step waits for a yes of its own.
#[test]
fn an_unattended_incident_asks_before_a_live_only_promote() {
    let test = Drillbook::new()
        .playbook("p.yaml", &repoint_playbook(""))
        .file("app.env", OLD_ENV.as_bytes());
    let dir = test.dir().to_path_buf();
    let output = with_restore_url(&test)
        .args(&["run", "p.yaml", "--mode", "incident"])
        .expect_status(4)
        .run();
    assert!(
        output.stdout.contains("drillbook approve"),
        "{}",
        output.stdout
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app.env")).expect("env file"),
        OLD_ENV,
        "nothing may change before the yes"
    );
    let run_id = only_run(&dir);
    let approved = Drillbook::in_dir(&dir)
        .args(&["approve", &run_id, "repoint", "--as", "alice"])
        .run();
    assert_eq!(approved.status, 0, "{}", approved.stderr);
    let resumed = with_restore_url(&test).args(&["resume", &run_id]).run();
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("app.env")).expect("env file"),
        OLD_ENV.replace("postgres://old:oldpw@a/b", NEW_URL)
    );
}

/// What the secret store received: `METHOD path`, and the body.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP secret store on loopback: answers each request with `status` (echoing the body it
/// got, as some APIs do in their errors) and records `METHOD path` and the body.
fn secret_store(status: u16) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let request: Vec<&str> = request_line.split_whitespace().take(2).collect();
            seen.lock().expect("lock").push((
                request.join(" "),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (format!("127.0.0.1:{}", address.port()), received)
}

fn endpoint_playbook(endpoint: &str) -> String {
    format!(
        r#"version: 1
name: repoint
secrets: [RESTORE_URL]
steps:
  - id: repoint
    kind: promote
    live_only: false
    method: repoint
    url: "{{{{ secrets.RESTORE_URL }}}}"
    endpoint: "{endpoint}"
"#
    )
}

#[test]
fn repoint_puts_the_new_value_to_an_http_endpoint() {
    let (address, received) = secret_store(200);
    let test = Drillbook::new().playbook(
        "p.yaml",
        &endpoint_playbook(&format!("http://{address}/v1/secrets/app")),
    );
    let dir = test.dir().to_path_buf();
    with_restore_url(&test)
        .args(&["run", "p.yaml"])
        .expect_status(0)
        .run();
    let received = received.lock().expect("lock").clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].0, "PUT /v1/secrets/app");
    let body: serde_json::Value = serde_json::from_str(&received[0].1).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({ "name": "DATABASE_URL", "value": NEW_URL })
    );
    let (step, _) = reported_step(&dir, "repoint");
    assert_eq!(step["status"], "succeeded");
    assert_eq!(
        step["outputs"]["current"],
        "postgres://app:***@db2.internal:6432/orders"
    );
}

#[test]
fn a_refusing_endpoint_fails_the_step_without_credentials_or_the_value() {
    let (address, _) = secret_store(500);
    let test = Drillbook::new().playbook(
        "p.yaml",
        &endpoint_playbook(&format!("http://admin:tok3n@{address}/v1/secrets/app")),
    );
    let dir = test.dir().to_path_buf();
    let output = with_restore_url(&test)
        .args(&["run", "p.yaml"])
        .expect_status(1)
        .run();
    let (step, report) = reported_step(&dir, "repoint");
    let error = step["error"].as_str().expect("error").to_string();
    assert!(
        error.starts_with(&format!(
            "http://{address} answered HTTP 500 Internal Server Error to the new DATABASE_URL: "
        )),
        "{error}"
    );
    for text in [output.stdout, output.stderr, report] {
        assert!(!text.contains("tok3n"), "{text}");
        assert!(!text.contains("newpw"), "{text}");
    }
}

#[test]
fn standby_method_on_a_primary_does_not_promote_again() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: failover
steps:
  - id: promote
    kind: promote
    live_only: false
    method: standby
    standby: "postgres://postgres@127.0.0.1:5432/postgres"
    wait: 5s
"#,
    );
    let dir = test.dir().to_path_buf();
    with_restore_url(&test)
        .args(&["run", "p.yaml"])
        .expect_status(0)
        .run();
    // pg_promote on a primary fails ("recovery is not in progress"): success means it was
    // not called.
    let (step, _) = reported_step(&dir, "promote");
    assert_eq!(step["status"], "succeeded");
    assert_eq!(
        step["evidence"],
        serde_json::json!([
            "postgres@127.0.0.1:5432/postgres is already a primary (not promoted again)"
        ])
    );
    assert_eq!(step["outputs"]["previous"], "primary");
    assert_eq!(step["outputs"]["current"], "primary");
}
