//! `drillbook policy` against moto with its authorization enforced: a user holding exactly the
//! printed policy runs the shipped nightly-backup and storage-mirror; with any one action
//! removed, a run fails with access denied naming that action (a HEAD request's 403 carries
//! no `AccessDenied` code: drillbook says "access denied (HTTP 403)" and names the action).

mod common;

use std::path::Path;

use common::drill::shipped;
use common::moto::Moto;
use common::pg::TestDb;
use common::{Drillbook, minutes};

const POLICY_VARS: [&str; 6] = [
    "--var",
    "store=s3://backups/production",
    "--var",
    "storage=s3://storage/production",
    "--var",
    "mirror=s3://mirror/production",
];

fn policy(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "policy".to_string(),
        shipped("nightly-backup.yaml"),
        shipped("storage-mirror.yaml"),
        "--mode".into(),
        "live".into(),
    ];
    args.extend(POLICY_VARS.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = Drillbook::new().args(&args).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    serde_json::from_str(&output.stdout).expect("a JSON policy")
}

/// The actions a policy allows, in order.
fn actions(policy: &serde_json::Value) -> Vec<String> {
    let mut actions: Vec<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions").clone())
        .map(|a| a.as_str().expect("text").to_string())
        .collect();
    actions.sort();
    actions.dedup();
    actions
}

fn without(policy: &serde_json::Value, action: &str) -> serde_json::Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().expect("statements");
    statements.retain(|s| {
        s["Action"]
            .as_array()
            .expect("actions")
            .iter()
            .all(|a| a != action)
    });
    policy
}

/// Makes the buckets, a bucket to mirror, an old backup for the nightly pruning to delete,
/// and the user `operator` (its keys returned) with `policy`.
fn set_up(moto: &Moto) -> (String, String) {
    let keys = moto.python(
        r#"
s3 = client("s3")
for bucket in ["backups", "storage", "mirror"]:
    s3.create_bucket(Bucket=bucket)
for i in range(5):
    s3.put_object(Bucket="storage", Key=f"production/dir{i % 2}/object-{i}.bin", Body=(f"object {i} " * 200).encode())
# A backup older than the 30-day retention: the nightly run prunes it.
s3.put_object(Bucket="backups", Key="production/20200101T000000Z.dump", Body=b"old")
s3.put_object(Bucket="backups", Key="production/20200101T000000Z.dump.manifest.json", Body=b"{}")
iam = client("iam")
iam.create_user(UserName="operator")
key = iam.create_access_key(UserName="operator")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#,
    );
    let mut words = keys.split_whitespace();
    (
        words.next().expect("id").to_string(),
        words.next().expect("secret").to_string(),
    )
}

fn grant(moto: &Moto, policy: &serde_json::Value) {
    let document = serde_json::to_string(policy).expect("json");
    moto.python(&format!(
        "client('iam').put_user_policy(UserName='operator', PolicyName='drillbook', PolicyDocument={document:?})"
    ));
}

/// Runs nightly-backup then storage-mirror as `operator`, each in a new state directory, live
/// as their schedule runs them; the first that fails, with what it said, or `None`.
fn run_both(moto: &Moto, keys: (&str, &str), database: &TestDb) -> Option<(String, String)> {
    for (playbook, vars) in [
        (
            "nightly-backup.yaml",
            vec!["--var", "store=s3://backups/production"],
        ),
        (
            "storage-mirror.yaml",
            vec![
                "--var",
                "storage=s3://storage/production",
                "--var",
                "mirror=s3://mirror/production",
                "--var",
                "storage_class=STANDARD",
            ],
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["run", &shipped(playbook), "--mode", "live"]
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        args.extend(vars.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = Drillbook::in_dir(dir.path())
            .args(&args)
            .envs(moto.env_with(keys))
            .env("DATABASE_URL", database.url())
            .deadline(minutes(3))
            .run();
        if output.status != 0 {
            return Some((playbook.to_string(), said(dir.path(), &output)));
        }
    }
    None
}

/// What a run said: its output and its text report.
fn said(dir: &Path, output: &common::Output) -> String {
    let report = Drillbook::in_dir(dir)
        .args(&["report", "latest", "--format", "text"])
        .run();
    format!("{}\n{}\n{}", output.stdout, output.stderr, report.stdout)
}

#[test]
fn exactly_the_printed_policy_runs_the_nightly_jobs() {
    let moto = Moto::with_authorization();
    let (id, secret) = set_up(&moto);
    let database = TestDb::create("policy");
    database.psql("CREATE TABLE t AS SELECT generate_series(1, 100) AS n");
    let policy = policy(&[]);
    let all = actions(&policy);
    assert_eq!(
        all,
        [
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:ListBucketMultipartUploads",
            "s3:PutObject"
        ],
        "{policy:#}"
    );

    grant(&moto, &policy);
    if let Some((playbook, said)) = run_both(&moto, (&id, &secret), &database) {
        panic!("{playbook} failed with the whole policy:\n{said}");
    }
    let pruned = moto.python(
        r#"print(len(client("s3").list_objects_v2(Bucket="backups", Prefix="production/2020")["Contents"] if "Contents" in client("s3").list_objects_v2(Bucket="backups", Prefix="production/2020") else []))"#,
    );
    assert_eq!(pruned.trim(), "0", "the old backup was pruned");

    for action in &all {
        // The pruned backup comes back, so that deleting is needed again.
        moto.python(
            r#"
s3 = client("s3")
s3.put_object(Bucket="backups", Key="production/20200101T000000Z.dump", Body=b"old")
s3.put_object(Bucket="backups", Key="production/20200101T000000Z.dump.manifest.json", Body=b"{}")
"#,
        );
        grant(&moto, &without(&policy, action));
        let Some((playbook, said)) = run_both(&moto, (&id, &secret), &database) else {
            panic!("both runs succeeded without {action}");
        };
        assert!(
            said.to_lowercase().contains("access denied") && said.contains(action.as_str()),
            "{playbook} without {action} did not say AccessDenied naming it:\n{said}"
        );
    }
}

#[test]
fn a_secret_write_and_bucket_posture_add_their_actions() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: p
vars: { store: "s3://backups/production" }
secrets: [NEW_URL, TOKEN]
secrets_manager: { prefix: "production/" }
steps:
  - id: posture
    kind: verify
    source: "{{ vars.store }}"
    posture: { cold_after: 30d }
  - id: repoint
    kind: promote
    method: repoint
    url: "{{ secrets.NEW_URL }}"
    aws_secret: "production/app#DATABASE_URL"
"#,
    );
    let output = Drillbook::in_dir(test.dir())
        .args(&[
            "policy",
            "p.yaml",
            "--region",
            "eu-west-1",
            "--account",
            "123456789012",
        ])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let policy: serde_json::Value = serde_json::from_str(&output.stdout).expect("json");
    let by_action = |action: &str| -> serde_json::Value {
        policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .find(|s| s["Action"][0] == action)
            .map(|s| s["Resource"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        by_action("secretsmanager:PutSecretValue"),
        serde_json::json!([
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:production/app-??????"
        ])
    );
    let read = by_action("secretsmanager:GetSecretValue").to_string();
    for secret in ["production/NEW_URL", "production/TOKEN", "production/app"] {
        assert!(read.contains(secret), "{read}");
    }
    assert_eq!(
        by_action("s3:GetBucketVersioning"),
        serde_json::json!(["arn:aws:s3:::backups"])
    );
    assert_eq!(
        by_action("s3:GetLifecycleConfiguration"),
        serde_json::json!(["arn:aws:s3:::backups"])
    );
    assert_eq!(by_action("s3:PutObject"), serde_json::Value::Null);
}

#[test]
fn a_store_that_comes_from_a_secret_cannot_be_named() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: p
secrets: [STORE]
steps:
  - id: check
    kind: verify
    source: "{{ secrets.STORE }}"
"#,
    );
    let output = Drillbook::in_dir(test.dir())
        .args(&["policy", "p.yaml"])
        .run();
    assert_eq!(output.status, 2, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("step `check`, `source` (drill mode): it comes from secret `STORE`"),
        "{}",
        output.stderr
    );
}
