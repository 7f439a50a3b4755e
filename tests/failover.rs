//! The quarterly failover, for real, on the failover lab (scripts/failover-lab.sh): a
//! PostgreSQL primary with a streaming standby, two buckets, Redis and the application.
//! `playbooks/quarterly-failover.yaml` runs in drill mode: the standby becomes the primary,
//! the application follows it and the storage mirror, the notifications arrive, and the
//! cleanup leaves a healthy pair, so a second drill right after passes too. Killed right after
//! the promote, a drill resumes without promoting again.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::argv::{Sampler, unique};
use common::drill::{json_report, shipped, step};
use common::http::Receiver;
use common::pg::psql_url as psql;
use common::s3::S3Server;
use common::{Drillbook, journal, minutes, wait_for};

/// A lab started by the script; stopped (clusters removed) when dropped.
struct Lab {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    s3: S3Server,
}

impl Lab {
    fn up(redis_db: u32) -> Lab {
        let s3 = S3Server::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let app = lab_app();
        let output = Command::new("bash")
            .arg(script())
            .arg("up")
            .arg(dir.path())
            .envs(s3.env())
            .env("LAB_S3_ENDPOINT", &s3.endpoint)
            .env("LAB_S3_ROOT", &s3.root)
            .env("LAB_APP", &app)
            .env("LAB_REDIS_DB", redis_db.to_string())
            .env("DRILLBOOK", common::binary())
            .output()
            .expect("run the lab script");
        let lab_env = dir.path().join("lab.env");
        let env = std::fs::read_to_string(&lab_env)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        let lab = Lab { dir, env, s3 };
        assert!(
            output.status.success(),
            "failover-lab.sh up failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        lab
    }

    fn get(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in lab.env: {:?}", self.env))
    }

    /// Where drills keep their runs: `.drillbook` in the lab's directory.
    fn state(&self) -> PathBuf {
        self.dir.path().join(".drillbook")
    }

    /// drillbook in the lab's directory with its S3 settings, allowed 5 minutes.
    fn drillbook(&self) -> Drillbook {
        Drillbook::in_dir(self.dir.path())
            .envs(self.s3.env())
            .deadline(minutes(5))
    }

    /// Whether the cluster `name` (A or B) is in recovery.
    fn in_recovery(&self, name: &str) -> bool {
        psql(
            self.get(&format!("{name}_URL")),
            "SELECT pg_is_in_recovery()",
        ) == "t"
    }

    fn app_env(&self) -> String {
        std::fs::read_to_string(self.get("APP_ENV_FILE")).expect("the app's env file")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/failover-lab.sh")
}

/// The lab application, built beside drillbook (`cargo test` builds the examples).
fn lab_app() -> PathBuf {
    let app = common::binary()
        .parent()
        .expect("target dir")
        .join("examples/lab-app");
    assert!(
        app.exists(),
        "{} is missing: run `cargo build --example lab-app` (a plain `cargo test` builds it)",
        app.display()
    );
    app
}

fn redis_keys(db: u32) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-n", &db.to_string(), "DBSIZE"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The playbook with `every: 15m` shortened, so a few-second drill sends several updates.
fn playbook_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(shipped("quarterly-failover.yaml")).expect("playbook");
    assert!(text.contains("every: 15m"));
    let path = dir.join("quarterly-failover.yaml");
    std::fs::write(&path, text.replace("every: 15m", "every: 200ms")).expect("write");
    path
}

/// The secrets and vars of a drill from `primary` (A or B) to the other cluster.
fn drill_inputs(
    lab: &Lab,
    receiver: &Receiver,
    primary: &str,
) -> (Vec<(String, String)>, Vec<String>) {
    let standby = if primary == "A" { "B" } else { "A" };
    let env = vec![
        (
            "DRILL_PRIMARY_URL".into(),
            lab.get(&format!("{primary}_URL")).into(),
        ),
        (
            "DRILL_STANDBY_URL".into(),
            lab.get(&format!("{standby}_URL")).into(),
        ),
        ("DRILL_REDIS_URL".into(), lab.get("DRILL_REDIS_URL").into()),
        (
            "DRILL_SLACK_WEBHOOK".into(),
            format!("{}/hooks/T000/B000/secret-token", receiver.url),
        ),
        ("STATUSPAGE_TOKEN".into(), "statuspage-secret-token".into()),
    ];
    let options = lab.get(&format!("{primary}_OPTIONS")).to_string();
    let vars = [
        ("drill_store", lab.get("STORE").to_string()),
        ("drill_storage", lab.get("STORAGE").to_string()),
        ("drill_mirror", lab.get("MIRROR").to_string()),
        ("drill_env_file", lab.get("APP_ENV_FILE").to_string()),
        ("drill_health_url", lab.get("HEALTH_URL").to_string()),
        (
            "drill_status_page",
            format!("{}/v1/pages/lab/incidents", receiver.url),
        ),
        ("drill_pg_bin", lab.get("PG_BIN").to_string()),
        (
            "drill_old_primary_data",
            lab.get(&format!("{primary}_DATA")).to_string(),
        ),
        ("drill_old_primary_options", options),
    ];
    let args = vars
        .into_iter()
        .flat_map(|(name, value)| ["--var".to_string(), format!("{name}={value}")])
        .collect();
    (env, args)
}

/// The lab's databases under a password in the drill's secrets (trust lets any through), so
/// that wherever it shows, it came from the URLs drillbook was given.
fn with_password(env: Vec<(String, String)>, password: &str) -> Vec<(String, String)> {
    env.into_iter()
        .map(|(name, value)| {
            let value = if name.ends_with("_URL") && value.starts_with("postgres://postgres@") {
                password_in(&value, password)
            } else {
                value
            };
            (name, value)
        })
        .collect()
}

fn password_in(url: &str, password: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{password}@"), 1)
}

fn run_args<'a>(playbook: &'a str, run_id: &'a str, vars: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        playbook,
        "--run-id",
        run_id,
        "--approve-all",
        "--as",
        "alice",
    ];
    args.extend(vars.iter().map(String::as_str));
    args
}

/// A drill as a team runs it unattended: the run pre-approves as alice and stops at the
/// four-eyes gate (exit 4), bob approves from another shell, and the run resumes.
fn four_eyes_drill(
    lab: &Lab,
    playbook: &str,
    run_id: &str,
    env: &[(String, String)],
    vars: &[String],
) {
    let output = lab
        .drillbook()
        .args(&run_args(playbook, run_id, vars))
        .envs(env)
        .run();
    assert_eq!(
        output.status, 4,
        "waits for a second approver\n{}\n{}",
        output.stdout, output.stderr
    );
    let output = lab
        .drillbook()
        .args(&["approve", run_id, "approve", "--as", "bob"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let output = lab.drillbook().args(&["resume", run_id]).envs(env).run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
}

/// Requests the receiver got on paths starting with `prefix`.
fn count(receiver: &Receiver, method: &str, prefix: &str) -> usize {
    receiver
        .received()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(prefix))
        .count()
}

#[test]
fn two_drills_in_a_row_fail_over_and_leave_a_healthy_pair() {
    let lab = Lab::up(13);
    let receiver = Receiver::start();
    let playbook = playbook_copy(lab.dir.path());
    let playbook = playbook.to_str().expect("utf-8 path");
    assert!(!lab.in_recovery("A") && lab.in_recovery("B"));
    // Every process's command line, read every 10 ms through both drills: the databases'
    // password and the tokens never show (the fence's psql, the checkpoint's and pg_rewind
    // connect through their environment).
    let password = unique("lab-password");
    let watched = [
        "--command=ALTER SYSTEM SET default_transaction_read_only",
        "--command=CHECKPOINT",
        "pg_rewind --target-pgdata",
    ];
    let sampler = Sampler::start(
        &[&password, "statuspage-secret-token", "B000/secret-token"],
        &watched,
    );

    // Drill 1: A -> B.
    let (env, vars) = drill_inputs(&lab, &receiver, "A");
    let env = with_password(env, &password);
    four_eyes_drill(&lab, playbook, "drill-1", &env, &vars);

    // The standby is the primary and takes writes; the old primary follows it.
    assert!(!lab.in_recovery("B"), "B was promoted");
    psql(
        lab.get("B_URL"),
        "INSERT INTO orders (item) VALUES ('after the failover')",
    );
    assert!(lab.in_recovery("A"), "A was rebuilt as the new standby");
    assert_eq!(
        psql(
            lab.get("B_URL"),
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        ),
        "1"
    );
    wait_for(Duration::from_secs(10), "the write to reach A", || {
        psql(
            lab.get("A_URL"),
            "SELECT count(*) FROM orders WHERE item = 'after the failover'",
        ) == "1"
    });
    // The application points at B; its storage went to the mirror (the smoke test saw it
    // there), and the drill's cleanup pointed it back at the primary bucket.
    let app_env = lab.app_env();
    assert!(
        app_env.contains(&format!(
            "DATABASE_URL={}\n",
            password_in(lab.get("B_URL"), &password)
        )),
        "{app_env}"
    );
    assert!(
        app_env.contains(&format!("STORAGE_URL={}\n", lab.get("STORAGE"))),
        "{app_env}"
    );
    assert_eq!(redis_keys(13), "0", "the cache was flushed");

    let report = json_report(lab.dir.path(), "drill-1");
    // The standby had replayed everything it received: no lag, on an idle primary too.
    let lag = step(&report, "assess")["outputs"]["replication_lag"]
        .as_str()
        .expect("replication lag")
        .to_string();
    assert!(
        lag.ends_with("ms") || (lag.ends_with('s') && !lag.contains(['m', 'h', 'd'])),
        "a lag under a minute: {lag}"
    );
    let smoke = step(&report, "smoke");
    assert_eq!(smoke["status"], "succeeded", "{smoke}");
    let smoke_text = smoke.to_string();
    assert!(smoke_text.contains("lab-mirror"), "{smoke_text}");
    assert_eq!(step(&report, "storage_parity")["status"], "succeeded");
    assert_eq!(step(&report, "switch_storage")["status"], "succeeded");
    for id in [
        "stop_old_primary",
        "rewind_old_primary",
        "start_new_standby",
        "check_pair",
    ] {
        assert_eq!(
            step(&report, id)["status"],
            "succeeded",
            "{id}: {}",
            step(&report, id)
        );
    }
    // The mirror holds every object of the bucket.
    let bucket = lab.s3.root.join("lab-storage/app/uploads");
    let mirror = lab.s3.root.join("lab-mirror/app/uploads");
    for entry in std::fs::read_dir(&bucket).expect("bucket") {
        let name = entry.expect("entry").file_name();
        assert_eq!(
            std::fs::read(bucket.join(&name)).unwrap(),
            std::fs::read(mirror.join(&name)).unwrap_or_default(),
            "{name:?} in the mirror"
        );
    }

    // The notifications, counted where they arrived.
    let chat = count(&receiver, "POST", "/hooks/");
    let updates = receiver
        .received()
        .iter()
        .filter(|r| r.body.contains("elapsed of the"))
        .count();
    assert!(
        updates >= 2,
        "updates every 200 ms during the drill: {updates}"
    );
    assert_eq!(chat, updates + 2, "declare, the updates and restored");
    assert_eq!(count(&receiver, "POST", "/v1/pages/lab/incidents"), 1);
    assert_eq!(
        count(&receiver, "PATCH", "/v1/pages/lab/incidents/incident-"),
        1,
        "the incident it opened was resolved: {:?}",
        receiver.received()
    );
    assert!(
        receiver.received().iter().any(|r| r
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == "OAuth statuspage-secret-token")),
        "the status page got its token"
    );
    // The report lists every message, as many as arrived.
    let listed: Vec<&serde_json::Value> = report["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter(|n| n["delivered"] == true)
        .collect();
    assert_eq!(listed.len(), receiver.received().len(), "{listed:?}");
    assert_eq!(
        listed.iter().filter(|n| n["step"] == "updates").count(),
        updates
    );
    // Secrets never reach the journal.
    let journal_text =
        std::fs::read_to_string(lab.state().join("runs/drill-1/journal.jsonl")).expect("journal");
    assert!(!journal_text.contains("statuspage-secret-token"));
    assert!(!journal_text.contains("secret-token"));

    // The post-mortem: timeline, objectives with verdicts, approvals, messages.
    let md = lab
        .drillbook()
        .args(&["report", "drill-1", "--format", "md"])
        .run();
    assert_eq!(md.status, 0, "{}", md.stderr);
    for needle in [
        "## Timeline",
        "RTO",
        "RPO",
        "## Approvals",
        "bob",
        "## Communication",
        "promote_standby",
        "met",
    ] {
        assert!(md.stdout.contains(needle), "{needle} in\n{}", md.stdout);
    }

    // Drill 2, right after: B -> A.
    let (env, vars) = drill_inputs(&lab, &receiver, "B");
    let env = with_password(env, &password);
    four_eyes_drill(&lab, playbook, "drill-2", &env, &vars);
    sampler.stop().assert_no_secret_while_all_ran();
    assert!(
        !lab.in_recovery("A") && lab.in_recovery("B"),
        "back to A primary, B standby"
    );
    assert!(lab.app_env().contains(&format!(
        "DATABASE_URL={}\n",
        password_in(lab.get("A_URL"), &password)
    )));
    psql(
        lab.get("A_URL"),
        "INSERT INTO orders (item) VALUES ('after the second failover')",
    );
    assert_eq!(count(&receiver, "POST", "/v1/pages/lab/incidents"), 2);

    // The history shows both drills, and a prediction for the next.
    let history = lab
        .drillbook()
        .args(&["history", "quarterly-failover", "--format", "json"])
        .run();
    assert_eq!(history.status, 0, "{}", history.stderr);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).expect("JSON");
    let playbook = &history["playbooks"][0];
    let runs: Vec<&str> = playbook["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| {
            assert_eq!(run["exit_code"], 0, "{run}");
            assert!(
                run["rto_seconds"].as_f64().is_some_and(|s| s > 0.0),
                "{run}"
            );
            run["run_id"].as_str().expect("id")
        })
        .collect();
    assert_eq!(runs, ["drill-1", "drill-2"]);
    let prediction = &playbook["prediction"];
    assert_eq!(prediction["runs"], 2, "{prediction}");
    assert!(
        prediction["median_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{prediction}"
    );
    // The critical path runs to the clock stop through one of its two branches: the database
    // (through the promotion) or the storage (through the switch). Which one is longer depends
    // on this machine's timing of the two drills, so either is right.
    assert!(
        prediction["critical_path"].as_array().is_some_and(|path| {
            path.last().is_some_and(|step| step == "smoke")
                && path
                    .iter()
                    .any(|step| step == "promote_standby" || step == "switch_storage")
        }),
        "{prediction}"
    );
    // The second drill's HTML report sets its RTO against the first's.
    let html = lab
        .drillbook()
        .args(&["report", "drill-2", "--format", "html"])
        .run();
    assert_eq!(html.status, 0, "{}", html.stderr);
    assert!(
        html.stdout.contains("drill-1"),
        "the previous run in the HTML report"
    );
}

#[test]
fn a_drill_refuses_targets_that_are_live() {
    let lab = Lab::up(14);
    let receiver = Receiver::start();
    let (mut env, vars) = drill_inputs(&lab, &receiver, "A");
    // The live primary is set, and is the drill's standby (127.0.0.1 and localhost are one host).
    let live = lab.get("B_URL").replace("127.0.0.1", "localhost");
    env.push(("DATABASE_URL".into(), live));
    let playbook = shipped("quarterly-failover.yaml");
    let output = lab
        .drillbook()
        .args(&run_args(&playbook, "refused", &vars))
        .envs(&env)
        .run();
    assert_eq!(output.status, 2, "{}\n{}", output.stdout, output.stderr);
    assert!(
        output.stderr.contains("drill target `standby`")
            && output.stderr.contains("live target `primary`"),
        "{}",
        output.stderr
    );
    assert!(lab.in_recovery("B"), "nothing was promoted");
    assert!(
        !lab.state().join("runs/refused").exists(),
        "no run was started"
    );
    assert!(receiver.received().is_empty(), "nothing was announced");
}

#[test]
fn killed_right_after_the_promote_resumes_without_promoting_again() {
    let lab = Lab::up(15);
    let receiver = Receiver::start();
    let playbook = playbook_copy(lab.dir.path());
    let playbook = playbook.to_str().expect("utf-8 path");
    let (env, vars) = drill_inputs(&lab, &receiver, "A");
    let output = lab
        .drillbook()
        .args(&run_args(playbook, "killed", &vars))
        .envs(&env)
        .run();
    assert_eq!(output.status, 4, "{}\n{}", output.stdout, output.stderr);
    let output = lab
        .drillbook()
        .args(&["approve", "killed", "approve", "--as", "bob"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let mut child = lab
        .drillbook()
        .args(&["resume", "killed"])
        .envs(&env)
        .discard_output()
        .spawn();
    wait_for(Duration::from_secs(120), "the promote to finish", || {
        lab.state().join("runs/killed").exists()
            && !common::events(
                &journal(lab.dir.path(), "killed"),
                "step_finished",
                Some("promote_standby"),
            )
            .is_empty()
    });
    child.kill();
    assert!(!lab.in_recovery("B"), "B was promoted before the kill");

    let output = lab.drillbook().args(&["resume", "killed"]).envs(&env).run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let records = journal(lab.dir.path(), "killed");
    assert_eq!(
        common::events(&records, "step_started", Some("promote_standby")).len(),
        1,
        "promoted once"
    );
    // Each promotion starts a timeline: the pair began on 1.
    assert_eq!(
        psql(
            lab.get("B_URL"),
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
        ),
        "2",
        "promoted exactly once"
    );
    let report = json_report(lab.dir.path(), "killed");
    assert_eq!(step(&report, "smoke")["status"], "succeeded");
    assert_eq!(step(&report, "check_pair")["status"], "succeeded");
    assert!(lab.in_recovery("A"));
}
