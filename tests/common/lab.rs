//! The failover lab (scripts/failover-lab.sh) from the tests: started for a test, stopped
//! (clusters removed) when dropped, and the inputs of a quarterly-failover drill on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::drill::shipped;
use super::http::Receiver;
use super::pg::psql_url as psql;
use super::s3::S3Server;
use super::{Drillbook, minutes};

/// A lab started by the script; stopped (clusters removed) when dropped.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
    pub s3: S3Server,
}

impl Lab {
    pub fn up(redis_db: u32) -> Lab {
        Lab::start(redis_db, None)
    }

    /// A lab whose primary is in the network namespace `netns`, for `partition`.
    pub fn up_in_netns(redis_db: u32, netns: &str) -> Lab {
        Lab::start(redis_db, Some(netns))
    }

    fn start(redis_db: u32, netns: Option<&str>) -> Lab {
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
            .env("DRILLBOOK", super::binary())
            .envs(netns.map(|name| ("LAB_NETNS", name)))
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

    /// What `failover-lab.sh status` says.
    pub fn status(&self) -> String {
        let output = Command::new("bash")
            .arg(script())
            .arg("status")
            .arg(self.dir.path())
            .output()
            .expect("run the lab script");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// `failover-lab.sh partition` or `heal`.
    pub fn network(&self, action: &str) {
        let output = Command::new("bash")
            .arg(script())
            .arg(action)
            .arg(self.dir.path())
            .output()
            .expect("run the lab script");
        assert!(
            output.status.success(),
            "failover-lab.sh {action} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn get(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in lab.env: {:?}", self.env))
    }

    /// Where drills keep their runs: `.drillbook` in the lab's directory.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join(".drillbook")
    }

    /// drillbook in the lab's directory with its S3 settings, allowed 5 minutes.
    pub fn drillbook(&self) -> Drillbook {
        Drillbook::in_dir(self.dir.path())
            .envs(self.s3.env())
            .deadline(minutes(5))
    }

    /// Bob, the second pair of eyes, approves the four-eyes gate `approve` of `run_id` from
    /// his own OS account (alice ran the drill with `--approve-all`).
    pub fn approve_as_bob(&self, run_id: &str) -> super::Output {
        super::share_state(&self.dir.path().join(".drillbook"));
        self.drillbook()
            .args(&["approve", run_id, "approve", "--as", "bob"])
            .by_uid(4242)
            .run()
    }

    /// Whether the cluster `name` (A or B) is in recovery.
    pub fn in_recovery(&self, name: &str) -> bool {
        psql(
            self.get(&format!("{name}_URL")),
            "SELECT pg_is_in_recovery()",
        ) == "t"
    }

    pub fn app_env(&self) -> String {
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

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/failover-lab.sh")
}

/// The lab application, built beside drillbook (`cargo test` builds the examples).
pub fn lab_app() -> PathBuf {
    let app = super::binary()
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

pub fn redis_keys(db: u32) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-n", &db.to_string(), "DBSIZE"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The playbook with `every: 15m` shortened, so a few-second drill sends several updates.
pub fn playbook_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(shipped("quarterly-failover.yaml")).expect("playbook");
    assert!(text.contains("every: 15m"));
    let path = dir.join("quarterly-failover.yaml");
    std::fs::write(&path, text.replace("every: 15m", "every: 200ms")).expect("write");
    path
}

/// The secrets and vars of a drill from `primary` (A or B) to the other cluster.
pub fn drill_inputs(
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
        ("drill_wal_store", lab.get("WAL_STORE").to_string()),
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
pub fn with_password(env: Vec<(String, String)>, password: &str) -> Vec<(String, String)> {
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

pub fn password_in(url: &str, password: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{password}@"), 1)
}

pub fn run_args<'a>(playbook: &'a str, run_id: &'a str, vars: &'a [String]) -> Vec<&'a str> {
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
pub fn four_eyes_drill(
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
    let output = lab.approve_as_bob(run_id);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let output = lab.drillbook().args(&["resume", run_id]).envs(env).run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
}

/// Requests the receiver got on paths starting with `prefix`.
pub fn count(receiver: &Receiver, method: &str, prefix: &str) -> usize {
    receiver
        .received()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(prefix))
        .count()
}
