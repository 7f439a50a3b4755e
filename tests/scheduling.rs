//! docs/scheduling.md shows the files in `deploy/` as they are, and the crontab's lines work:
//! their commands run as cron runs them (`/bin/sh -c`, the crontab's variables, drillbook on
//! `PATH`) against the shipped playbooks, with a temporary state directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CRONTAB: &str = "deploy/cron/drillbook.crontab";
/// Where the crontab expects the playbooks (`playbooks/`) and `secrets.env`.
const CONFIG_DIR: &str = "/etc/drillbook";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

/// The fenced code blocks of a Markdown text whose first line is `# deploy/…`: the path it
/// names and the block's text.
fn deploy_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```") {
            continue;
        }
        let mut body = String::new();
        for inner in lines.by_ref() {
            if inner.starts_with("```") {
                break;
            }
            body.push_str(inner);
            body.push('\n');
        }
        let first = body.lines().next().unwrap_or("");
        if let Some(rest) = first.strip_prefix("# deploy/") {
            let path = format!("deploy/{}", rest.split_whitespace().next().unwrap_or(""));
            blocks.push((path, body));
        }
    }
    blocks
}

/// The first line where two texts differ, for a message that says where.
fn first_difference(expected: &str, actual: &str) -> String {
    let (mut e, mut a) = (expected.lines(), actual.lines());
    for number in 1.. {
        match (e.next(), a.next()) {
            (None, None) => return "a difference in line endings".into(),
            (x, y) if x == y => {}
            (x, y) => {
                return format!("line {number}: the file has {x:?}, the page {y:?}");
            }
        }
    }
    unreachable!()
}

#[test]
fn the_scheduling_page_shows_every_deploy_file_as_it_is() {
    let page = read(&root().join("docs/scheduling.md"));
    let blocks = deploy_blocks(&page);
    let mut shown = BTreeMap::new();
    for (path, body) in &blocks {
        let file = root().join(path);
        assert!(
            file.is_file(),
            "docs/scheduling.md shows {path}, which does not exist"
        );
        let text = read(&file);
        assert!(
            text == *body,
            "docs/scheduling.md's block for {path} differs from the file, {}: \
             copy the file into the page",
            first_difference(&text, body)
        );
        assert!(
            shown.insert(path.clone(), ()).is_none(),
            "docs/scheduling.md shows {path} twice"
        );
    }
    let mut files = Vec::new();
    files_under(&root().join("deploy"), &mut files);
    for file in files {
        let path = file
            .strip_prefix(root())
            .expect("under the repository")
            .to_string_lossy()
            .into_owned();
        assert!(
            shown.contains_key(&path),
            "{path} is not shown in docs/scheduling.md: add a block whose first line is \
             `# {path}` (the file's own first line)"
        );
    }
}

/// A crontab: its variables (`NAME=value` lines) and its jobs (five time fields, then the
/// command), as cron reads them.
struct Crontab {
    variables: Vec<(String, String)>,
    jobs: Vec<String>,
}

fn crontab() -> Crontab {
    let mut crontab = Crontab {
        variables: Vec::new(),
        jobs: Vec::new(),
    };
    for (number, line) in read(&root().join(CRONTAB)).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
        let is_job = fields.len() == 6
            && fields[..5].iter().all(|f| {
                !f.is_empty() && f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c))
            });
        if is_job {
            let command = fields[5].trim_start();
            // cron turns an unescaped % into a newline.
            assert!(
                !command.contains('%'),
                "{CRONTAB}:{}: a `%` in a command is a newline to cron",
                number + 1
            );
            crontab.jobs.push(command.to_string());
        } else {
            let (name, value) = line.split_once('=').unwrap_or_else(|| {
                panic!("{CRONTAB}:{}: neither a job nor NAME=value", number + 1)
            });
            crontab
                .variables
                .push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    crontab
}

/// Runs a crontab command as cron would: `SHELL` with `-c`, only the crontab's variables (and
/// HOME) in the environment, the state directory and the configuration directory moved to
/// temporary ones, drillbook's directory first on `PATH`.
fn run_as_cron(
    crontab: &Crontab,
    command: &str,
    config: &Path,
    state: &Path,
    home: &Path,
) -> (i32, String) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_drillbook"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let mut shell = "/bin/sh".to_string();
    let mut cron = Command::new("/bin/sh");
    cron.env_clear()
        .env("HOME", home)
        .env("LOGNAME", "drillbook");
    for (name, value) in &crontab.variables {
        let value = match name.as_str() {
            "PATH" => format!("{}:{value}", bin_dir.display()),
            "DRILLBOOK_STATE_DIR" => state.display().to_string(),
            "SHELL" => {
                shell = value.clone();
                value.clone()
            }
            _ => value.clone(),
        };
        cron.env(name, value);
    }
    assert_eq!(shell, "/bin/sh", "the crontab's SHELL");
    let command = command.replace(CONFIG_DIR, &config.display().to_string());
    let output = cron
        .arg("-c")
        .arg(&command)
        .current_dir(home)
        .output()
        .expect("/bin/sh runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// `/etc/drillbook` as the crontab expects it: the shipped playbooks but the quickstart, and a
/// secrets file with a value for every secret they name (distinct values, none of them live).
fn config_dir(dir: &Path) {
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).expect("playbooks/");
    let mut secrets = String::new();
    for entry in std::fs::read_dir(root().join("playbooks")).expect("playbooks/") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if name == "quickstart.yaml" {
            continue;
        }
        std::fs::copy(&path, playbooks.join(&name)).expect("copied");
    }
    // Addresses of TEST-NET-1 (RFC 5737): hosts that are not this one, none of them alike.
    for (name, value) in [
        ("DATABASE_URL", "postgres://backup@192.0.2.1:5432/app"),
        ("RESTORE_URL", "postgres://app@192.0.2.2:5432/app"),
        ("REDIS_URL", "redis://192.0.2.3:6379/0"),
        ("STANDBY_URL", "postgres://app@192.0.2.4:5432/app"),
        ("SLACK_WEBHOOK", "http://192.0.2.5/hook/live"),
        ("STATUSPAGE_TOKEN", "token-not-used-in-a-drill"),
        ("DRILL_PRIMARY_URL", "postgres://app@192.0.2.11:5432/app"),
        ("DRILL_RESTORE_URL", "postgres://app@192.0.2.12:5432/app"),
        ("DRILL_REDIS_URL", "redis://192.0.2.13:6379/0"),
        ("DRILL_STANDBY_URL", "postgres://app@192.0.2.14:5432/app"),
        ("DRILL_SLACK_WEBHOOK", "http://192.0.2.15/hook/drill"),
    ] {
        secrets.push_str(&format!("{name}={value}\n"));
    }
    std::fs::write(dir.join("secrets.env"), secrets).expect("secrets.env");
}

#[test]
fn the_crontab_lines_run_and_alert_only_on_failure() {
    let crontab = crontab();
    let temp = tempfile::tempdir().expect("a temporary directory");
    let (config, state, home) = (
        temp.path().join("etc"),
        temp.path().join("state"),
        temp.path().join("home"),
    );
    config_dir(&config);
    std::fs::create_dir_all(&home).expect("home");
    assert!(
        crontab
            .variables
            .iter()
            .any(|(n, _)| n == "DRILLBOOK_STATE_DIR"),
        "the crontab names the state directory"
    );

    // Every `run` line, as a dry run: its arguments parse, its playbook loads, its secrets
    // resolve, and a success prints nothing (cron mails nothing).
    let runs: Vec<&String> = crontab
        .jobs
        .iter()
        .filter(|job| job.contains("drillbook run "))
        .collect();
    assert!(runs.len() >= 9, "a line per scheduled playbook: {runs:?}");
    for job in &runs {
        assert!(
            job.contains("--if-due"),
            "a scheduled run is --if-due: {job}"
        );
        let dry = job.replacen("drillbook run ", "drillbook run --dry-run ", 1);
        let (code, output) = run_as_cron(&crontab, &dry, &config, &state, &home);
        assert_eq!(
            (code, output.as_str()),
            (0, ""),
            "the crontab line, as a dry run, succeeds silently: {dry}"
        );
    }

    // The same line when drillbook fails: its exit code and output, for cron to mail. Here
    // the secrets file lacks the one secret nightly-backup needs.
    let nightly = runs
        .iter()
        .find(|job| job.contains("playbooks/nightly-backup.yaml"))
        .expect("a nightly-backup line");
    std::fs::write(config.join("secrets.env"), "UNRELATED=1\n").expect("secrets.env");
    let dry = nightly.replacen("drillbook run ", "drillbook run --dry-run ", 1);
    let (code, output) = run_as_cron(&crontab, &dry, &config, &state, &home);
    assert_eq!(
        code, 0,
        "the line itself succeeds once it has said why: {output}"
    );
    assert!(
        output.starts_with("drillbook nightly-backup exited ") && output.contains("DATABASE_URL"),
        "the alert names the playbook, the exit code and the missing secret: {output}"
    );
    assert!(
        !output.starts_with("drillbook nightly-backup exited 0"),
        "a failure is not exit 0: {output}"
    );

    // `due` on a fresh state: every playbook in playbooks/ never passed, exit 1, and the line
    // prints the alert with the list.
    let due = crontab
        .jobs
        .iter()
        .find(|job| job.contains("drillbook due"))
        .expect("a `drillbook due` line");
    let (code, output) = run_as_cron(&crontab, due, &config, &state, &home);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.starts_with("drillbook due exited 1: "),
        "the alert says exit 1: {output}"
    );
    for playbook in ["nightly-backup", "quarterly-failover", "weekly-verify"] {
        assert!(
            output.contains(&format!("{playbook}: never passed")),
            "{playbook} is reported as never passed: {output}"
        );
    }
    assert!(
        !output.contains("quickstart"),
        "only the playbooks in the configuration directory: {output}"
    );
    // Nothing landed in the working directory (cron's: the home): the state went where the
    // crontab said.
    assert!(
        !home.join(".drillbook").exists(),
        "no .drillbook/ in the working directory"
    );
}

/// What the examples promise in docs/scheduling.md, which the tools that check them
/// (`.ci/check-deploy`) do not know to ask: each says where runs are kept, and none retries or
/// overlaps a run behind the scheduler's back.
#[test]
fn every_example_names_the_state_and_fails_on_a_failed_run() {
    let deploy = root().join("deploy");
    let crontab = read(&deploy.join("cron/drillbook.crontab"));
    assert!(
        crontab.contains("\nDRILLBOOK_STATE_DIR=/"),
        "cron: an absolute state directory"
    );

    let service = read(&deploy.join("systemd/drillbook-drill@.service"));
    for line in [
        "Environment=DRILLBOOK_STATE_DIR=/var/lib/drillbook",
        "WorkingDirectory=/etc/drillbook",
        "Type=oneshot",
    ] {
        assert!(service.contains(line), "systemd: {line}");
    }
    assert!(
        !service.contains("SuccessExitStatus"),
        "systemd: only exit 0 is a success"
    );

    let config = read(&deploy.join("kubernetes/drillbook-config.yaml"));
    assert!(
        config.contains("  DRILLBOOK_STATE: s3://"),
        "Kubernetes: the state in a bucket"
    );
    assert!(
        config.contains("  DRILLBOOK_STATE_DIR: /var/lib/drillbook"),
        "Kubernetes: the working directory"
    );
    let cronjobs = read(&deploy.join("kubernetes/cronjobs.yaml"));
    let jobs: Vec<&str> = cronjobs
        .split("\n---\n")
        .filter(|doc| doc.contains("\nkind: CronJob\n"))
        .collect();
    let mut playbooks: Vec<String> = std::fs::read_dir(root().join("playbooks"))
        .expect("playbooks/")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        // The quickstart is a demo; post-release-verify runs after a release, not on a clock.
        .filter(|name| name != "quickstart.yaml" && name != "post-release-verify.yaml")
        .collect();
    playbooks.sort();
    let mut scheduled: Vec<String> = Vec::new();
    for job in &jobs {
        let args = job
            .lines()
            .find_map(|l| l.trim().strip_prefix("args: [run, playbooks/"))
            .unwrap_or_else(|| panic!("a CronJob runs a playbook: {job}"));
        let name = args.split(',').next().expect("the playbook").to_string();
        for line in [
            "  concurrencyPolicy: Forbid\n",
            "      backoffLimit: 0\n",
            "          restartPolicy: Never\n",
            "{ configMapRef: { name: drillbook } }",
            "mountPath: /var/lib/drillbook",
        ] {
            assert!(
                job.contains(line),
                "the CronJob of {name} has `{}`",
                line.trim()
            );
        }
        assert!(
            args.contains("--if-due"),
            "the CronJob of {name} runs it --if-due"
        );
        scheduled.push(name);
    }
    scheduled.sort();
    assert_eq!(
        scheduled, playbooks,
        "a CronJob per shipped playbook (the quickstart and post-release-verify aside)"
    );

    let workflow = read(&deploy.join("github/drillbook-drills.yml"));
    assert!(
        workflow.contains("DRILLBOOK_STATE: ${{ vars.DRILLBOOK_STATE }}"),
        "GitHub Actions: the state in a bucket"
    );
    assert!(
        workflow.contains("if: failure()") && workflow.contains("exit \"$code\""),
        "GitHub Actions: drillbook's exit code fails the job, and the failure alerts"
    );
    assert!(
        workflow.contains("types: [published]")
            && workflow.contains("run playbooks/post-release-verify.yaml --mode live"),
        "GitHub Actions: post-release-verify after each release"
    );
}
