//! Secrets from AWS Secrets Manager (moto's server): resolved by prefix and by pinned id, a
//! field of a JSON secret; `promote` writing a new version with the previous one kept and the
//! rollback named; a missing secret failing with its name and no value.

mod common;

use common::moto::Moto;
use common::{Drillbook, finished_step, only_run};

fn sha256(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn with_moto(test: Drillbook, moto: &Moto) -> Drillbook {
    test.envs(moto.env())
}

#[test]
fn secrets_are_read_by_prefix_and_by_pinned_id_and_masked() {
    let moto = Moto::start();
    let url = "postgres://app:pw-from-the-manager-31@db.internal/app";
    let key = "api-key-from-the-manager-77";
    moto.python(&format!(
        r#"
sm = client("secretsmanager")
sm.create_secret(Name="prod/app", SecretString=json.dumps({{"url": "{url}", "other": "x"}}))
sm.create_secret(Name="prod/API_KEY", SecretString="{key}")
"#
    ));
    let playbook = r#"version: 1
name: from-the-manager
secrets: [DB_URL, API_KEY]
secrets_manager:
  prefix: "prod/"
  ids: { DB_URL: "prod/app#url" }
steps:
  - id: show
    kind: command
    run: [sh, -c, 'printf %s "$DB_URL" | sha256sum; printf %s "$API_KEY" | sha256sum; echo "$API_KEY"']
    env: { DB_URL: "{{ secrets.DB_URL }}", API_KEY: "{{ secrets.API_KEY }}" }
"#;
    let test = Drillbook::new().playbook("p.yaml", playbook);
    let dir = test.dir().to_path_buf();
    // The environment sets DB_URL too: a pinned id is read from the manager all the same.
    let output = with_moto(Drillbook::in_dir(&dir), &moto)
        .env("DB_URL", "postgres://someone-else@elsewhere/db")
        .args(&["run", "p.yaml"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let run = only_run(&dir);
    let captured = std::fs::read_to_string(
        dir.join(".drillbook/runs")
            .join(&run)
            .join("output/show.1.stdout"),
    )
    .expect("captured");
    assert_eq!(
        captured,
        format!("{}  -\n{}  -\n***\n", sha256(url), sha256(key)),
        "the command saw the manager's values; the one it printed was masked"
    );
    for file in common::walk(&dir) {
        let bytes = std::fs::read(dir.join(&file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(key) && !text.contains("pw-from-the-manager"),
            "{file:?}"
        );
    }
}

#[test]
fn a_missing_secret_fails_with_its_name_and_no_value() {
    let moto = Moto::start();
    moto.python(
        r#"
client("secretsmanager").create_secret(Name="prod/app", SecretString=json.dumps({"url": "postgres://u:canary-pw-5521@h/d"}))
"#,
    );
    let playbook = r#"version: 1
name: missing
secrets: [NO_FIELD, NO_SECRET]
secrets_manager:
  prefix: "prod/"
  ids: { NO_FIELD: "prod/app#password" }
steps:
  - id: never
    kind: command
    run: [sh, -c, "echo $X"]
    env: { X: "{{ secrets.NO_FIELD }}{{ secrets.NO_SECRET }}" }
"#;
    let test = Drillbook::new().playbook("p.yaml", playbook);
    let output = with_moto(Drillbook::in_dir(test.dir()), &moto)
        .args(&["run", "p.yaml"])
        .run();
    assert_eq!(output.status, 2, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("missing secrets: NO_FIELD, NO_SECRET"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("prod/app has no field `password`")
            && output.stderr.contains("no secret named prod/NO_SECRET"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("canary-pw"), "{}", output.stderr);
    assert!(!output.stdout.contains("canary-pw"), "{}", output.stdout);
}

#[test]
fn an_unreachable_manager_is_an_error_not_a_hang_or_a_missing_secret() {
    let playbook = r#"version: 1
name: unreachable
secrets: [A]
secrets_manager: { prefix: "prod/" }
steps:
  - id: never
    kind: command
    run: [sh, -c, "echo $A"]
    env: { A: "{{ secrets.A }}" }
"#;
    let test = Drillbook::new().playbook("p.yaml", playbook);
    // Nothing listens on port 9 of loopback.
    let output = Drillbook::in_dir(test.dir())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_MAX_ATTEMPTS", "1")
        .args(&["run", "p.yaml"])
        .deadline(std::time::Duration::from_secs(60))
        .run();
    assert_eq!(output.status, 2, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("secret A: cannot read it from AWS Secrets Manager"),
        "{}",
        output.stderr
    );
}

#[test]
fn promote_writes_a_new_version_and_keeps_the_previous_one() {
    let moto = Moto::start();
    let old = "postgres://app:old-pw-1234@db-old.internal/app";
    let new = "postgres://app:new-pw-5678@db-new.internal/app";
    moto.python(&format!(
        r#"
client("secretsmanager").create_secret(Name="prod/app", SecretString=json.dumps({{"DATABASE_URL": "{old}", "REDIS_URL": "redis://cache/0"}}))
"#
    ));
    let playbook = r#"version: 1
name: promote-secret
secrets: [NEW_URL]
steps:
  - id: repoint
    kind: promote
    method: repoint
    url: "{{ secrets.NEW_URL }}"
    aws_secret: "prod/app#DATABASE_URL"
    live_only: false
"#;
    let test = Drillbook::new().playbook("p.yaml", playbook);
    let dir = test.dir().to_path_buf();
    let run = || {
        with_moto(Drillbook::in_dir(&dir), &moto)
            .env("NEW_URL", new)
            .args(&["run", "p.yaml"])
            .run()
    };
    let output = run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let state = moto.python(
        r#"
sm = client("secretsmanager")
current = sm.get_secret_value(SecretId="prod/app")
previous = sm.get_secret_value(SecretId="prod/app", VersionStage="AWSPREVIOUS")
print(json.dumps({"current": json.loads(current["SecretString"]), "current_id": current["VersionId"],
                  "previous": json.loads(previous["SecretString"]), "previous_id": previous["VersionId"]}))
"#,
    );
    let state: serde_json::Value = serde_json::from_str(&state).expect("json");
    assert_eq!(state["current"]["DATABASE_URL"], new);
    assert_eq!(
        state["current"]["REDIS_URL"], "redis://cache/0",
        "other fields kept"
    );
    assert_eq!(state["previous"]["DATABASE_URL"], old);

    let finished = finished_step(&dir, "repoint");
    let evidence = finished["evidence"].to_string();
    let (current_id, previous_id) = (
        state["current_id"].as_str().expect("id"),
        state["previous_id"].as_str().expect("id"),
    );
    assert!(
        evidence.contains(&format!("version {current_id} is now AWSCURRENT")),
        "{evidence}"
    );
    let rollback = format!(
        "aws secretsmanager update-secret-version-stage --secret-id prod/app --version-stage AWSCURRENT --move-to-version-id {previous_id} --remove-from-version-id {current_id}"
    );
    assert!(evidence.contains(&rollback), "{evidence}");
    assert!(
        !evidence.contains("new-pw-5678") && !evidence.contains("old-pw-1234"),
        "{evidence}"
    );

    // Run again: the secret already holds the value, so no third version is written.
    let output = run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let versions = moto.python(
        r#"print(len(client("secretsmanager").list_secret_version_ids(SecretId="prod/app")["Versions"]))"#,
    );
    assert_eq!(versions.trim(), "2");

    // The rollback the evidence names makes the old version current again. (moto moves the
    // stage but keeps answering an unqualified read with the newest version, so the check
    // reads the stages.)
    moto.python(&format!(
        r#"
sm = client("secretsmanager")
sm.update_secret_version_stage(SecretId="prod/app", VersionStage="AWSCURRENT", MoveToVersionId="{previous_id}", RemoveFromVersionId="{current_id}")
stages = {{v["VersionId"]: v["VersionStages"] for v in sm.list_secret_version_ids(SecretId="prod/app")["Versions"]}}
assert "AWSCURRENT" in stages["{previous_id}"], stages
assert json.loads(sm.get_secret_value(SecretId="prod/app", VersionId="{previous_id}")["SecretString"])["DATABASE_URL"] == "{old}"
"#
    ));
}

#[test]
fn promote_refuses_a_secret_that_does_not_exist() {
    let moto = Moto::start();
    let playbook = r#"version: 1
name: promote-absent
steps:
  - id: repoint
    kind: promote
    method: repoint
    url: "postgres://app@db-new.internal/app"
    aws_secret: "prod/absent"
    live_only: false
"#;
    let test = Drillbook::new().playbook("p.yaml", playbook);
    let output = with_moto(Drillbook::in_dir(test.dir()), &moto)
        .args(&["run", "p.yaml"])
        .run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    let finished = finished_step(test.dir(), "repoint");
    assert!(
        finished["error"]
            .to_string()
            .contains("there is no secret named prod/absent"),
        "{finished}"
    );
}

/// A drill whose promote writes to the live secret, spelled another way (its ARN, a field of
/// it), is refused before anything runs: no request reaches the manager.
#[test]
fn a_drill_never_writes_the_live_secret_however_it_is_spelled() {
    for spelling in [
        "prod/app",
        "prod/app#DATABASE_URL",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/app-AbC123",
    ] {
        let playbook = format!(
            r#"version: 1
name: drill-secret
targets:
  live: {{ app_secret: "prod/app#DATABASE_URL" }}
  drill: {{ app_secret: "staging/app#DATABASE_URL" }}
steps:
  - id: repoint
    kind: promote
    method: repoint
    url: "postgres://app@db-new.internal/app"
    aws_secret: "{spelling}"
    live_only: false
"#
        );
        let test = Drillbook::new().playbook("p.yaml", &playbook);
        // Nothing listens here: a request would fail differently, and later.
        let output = Drillbook::in_dir(test.dir())
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_REGION", "us-east-1")
            .args(&["run", "p.yaml"])
            .run();
        assert_eq!(output.status, 2, "{spelling}: {}", output.stderr);
        assert!(
            output.stderr.contains("step `repoint` writes `aws_secret`")
                && output.stderr.contains("live target `app_secret`"),
            "{spelling}: {}",
            output.stderr
        );
    }
}
