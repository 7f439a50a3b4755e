//! `verify` with `posture:` against moto's S3 (which implements versioning and lifecycle
//! configuration): a bucket without versioning, or without the lifecycle rule, fails naming
//! what is missing; backups outside the retention or with a missed night fail naming them;
//! a bucket set up as the procedure says passes.

mod common;

use common::moto::Moto;
use common::{Drillbook, finished_step};

const PLAYBOOK: &str = r#"version: 1
name: posture
vars: { store: "s3://backups/production" }
steps:
  - id: posture
    kind: verify
    source: "{{ vars.store }}"
    posture: { cold_after: 30d, noncurrent_kept: 30d, retention: 7d, every: 1d }
"#;

/// A bucket `backups` with a complete backup under `production/` for each of `days_ago`,
/// then `setup` (Python, `s3` in scope) run on it.
fn bucket(moto: &Moto, days_ago: &[u32], setup: &str) {
    let days: Vec<String> = days_ago.iter().map(u32::to_string).collect();
    moto.python(&format!(
        r#"
import datetime
s3 = client("s3")
s3.create_bucket(Bucket="backups")
now = datetime.datetime.now(datetime.timezone.utc)
for days in [{}]:
    key = "production/" + (now - datetime.timedelta(days=days, minutes=5)).strftime("%Y%m%dT%H%M%SZ") + ".dump"
    s3.put_object(Bucket="backups", Key=key, Body=b"dump")
    s3.put_object(Bucket="backups", Key=key + ".manifest.json", Body=b"{{}}")
{setup}
"#,
        days.join(", ")
    ));
}

const VERSIONED: &str =
    r#"s3.put_bucket_versioning(Bucket="backups", VersioningConfiguration={"Status": "Enabled"})"#;

fn lifecycle(prefix: &str, days: u32, class: &str) -> String {
    format!(
        r#"s3.put_bucket_lifecycle_configuration(Bucket="backups", LifecycleConfiguration={{"Rules": [{{
    "ID": "archive", "Status": "Enabled", "Filter": {{"Prefix": "{prefix}"}},
    "Transitions": [{{"Days": {days}, "StorageClass": "{class}"}}],
    "NoncurrentVersionExpiration": {{"NoncurrentDays": 30}}}}]}})"#
    )
}

/// Runs the posture check; its exit code and what the step said (error and evidence).
fn check(moto: &Moto) -> (i32, String) {
    let test = Drillbook::new().playbook("p.yaml", PLAYBOOK);
    let output = Drillbook::in_dir(test.dir())
        .envs(moto.env())
        .args(&["run", "p.yaml"])
        .run();
    let finished = finished_step(test.dir(), "posture");
    (
        output.status,
        format!("{} {}", finished["error"], finished["evidence"]),
    )
}

const NIGHTLY: [u32; 7] = [0, 1, 2, 3, 4, 5, 6];

#[test]
fn a_bucket_set_up_as_the_procedure_says_passes() {
    let moto = Moto::start();
    bucket(
        &moto,
        &NIGHTLY,
        &format!("{VERSIONED}\n{}", lifecycle("production/", 30, "GLACIER")),
    );
    let (status, said) = check(&moto);
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains("versioning of s3://backups/production: Enabled"),
        "{said}"
    );
    assert!(
        said.contains("lifecycle rule `archive` moves objects under s3://backups/production to GLACIER after 30 days"),
        "{said}"
    );
    assert!(said.contains("keeps noncurrent versions"), "{said}");
    assert!(said.contains("7 complete backup(s)"), "{said}");
}

#[test]
fn a_bucket_without_versioning_fails_naming_it() {
    let moto = Moto::start();
    bucket(&moto, &NIGHTLY, &lifecycle("", 30, "GLACIER"));
    let (status, said) = check(&moto);
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains("versioning of s3://backups/production was never enabled"),
        "{said}"
    );
    // Suspended is no better.
    moto.python(
        r#"
s3 = client("s3")
s3.put_bucket_versioning(Bucket="backups", VersioningConfiguration={"Status": "Enabled"})
s3.put_bucket_versioning(Bucket="backups", VersioningConfiguration={"Status": "Suspended"})
"#,
    );
    let (status, said) = check(&moto);
    assert_eq!(status, 1, "{said}");
    assert!(said.contains("is Suspended, not Enabled"), "{said}");
}

#[test]
fn a_bucket_without_the_lifecycle_rule_fails_naming_it() {
    let moto = Moto::start();
    bucket(&moto, &NIGHTLY, VERSIONED);
    let (status, said) = check(&moto);
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(
            "no enabled lifecycle rule moves objects under s3://backups/production to a cold class"
        ),
        "{said}"
    );
    // A rule for another prefix does not count; one that waits too long fails with its days.
    moto.python(&format!(
        "s3 = client('s3')\n{}",
        lifecycle("staging/", 30, "GLACIER")
    ));
    let (status, said) = check(&moto);
    assert_eq!(status, 1, "{said}");
    assert!(said.contains("no enabled lifecycle rule"), "{said}");
    moto.python(&format!(
        "s3 = client('s3')\n{}",
        lifecycle("production/", 90, "DEEP_ARCHIVE")
    ));
    let (status, said) = check(&moto);
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains("to DEEP_ARCHIVE after 90 days, expected at most 30"),
        "{said}"
    );
}

#[test]
fn backups_outside_the_retention_or_missing_in_it_fail() {
    let moto = Moto::start();
    // Nights 3 and 4 missed, and a backup from 20 days ago that pruning should have removed.
    bucket(
        &moto,
        &[0, 1, 2, 5, 6, 20],
        &format!("{VERSIONED}\n{}", lifecycle("", 30, "GLACIER_IR")),
    );
    let (status, said) = check(&moto);
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains("1 backup(s) in s3://backups/production older than the retention of 7d"),
        "{said}"
    );
    assert!(
        said.contains("backups missing in s3://backups/production"),
        "{said}"
    );
}
