//! Approvals without a terminal: the run stops with exit 4, `approve` records who decided,
//! `resume` goes on; rejections, four-eyes gates, expiry and pre-approval.

mod common;

use std::path::Path;

use common::{Drillbook, events, journal, only_run};

const GATED: &str = r#"version: 1
name: gated
objectives: { rto: 30m }
steps:
  - { id: prepare, kind: command, run: [touch, prepared] }
  - id: go
    kind: approval
    prompt: "Promote the standby? (run {{ run.id }})"
  - { id: act, kind: command, run: [touch, acted], clock: stop }
"#;

fn gated(dir_text: &str) -> (Drillbook, std::path::PathBuf) {
    let test = Drillbook::new().playbook("p.yaml", dir_text);
    let dir = test.dir().to_path_buf();
    (test, dir)
}

fn first_run(dir: &Path) -> String {
    let output = Drillbook::in_dir(dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    assert!(dir.join("prepared").exists());
    assert!(!dir.join("acted").exists());
    only_run(dir)
}

#[test]
fn approve_from_another_process_then_resume() {
    let (_test, dir) = gated(GATED);
    let run = first_run(&dir);
    let records = journal(&dir, &run);
    let asked = events(&records, "approval_requested", Some("go"));
    assert_eq!(
        asked[0]["prompt"],
        format!("Promote the standby? (run {run})")
    );
    assert_eq!(records.last().expect("records")["exit_code"], 4);
    let status = Drillbook::in_dir(&dir).args(&["runs"]).run();
    assert!(
        status.stdout.contains("waiting_approval"),
        "{}",
        status.stdout
    );

    // Alice decides a while later: the clock is moved on, not waited for.
    let output = Drillbook::in_dir(&dir)
        .env("DRILLBOOK_CLOCK_OFFSET", "300ms")
        .args(&[
            "approve",
            &run,
            "go",
            "--as",
            "alice",
            "--reason",
            "checked lag",
        ])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(
        output.stderr,
        format!("alice approved `go`; continue with: drillbook resume {run}\n")
    );
    let output = Drillbook::in_dir(&dir)
        .env("DRILLBOOK_CLOCK_OFFSET", "300ms")
        .args(&["resume", &run])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(dir.join("acted").exists());
    assert_eq!(
        events(&journal(&dir, &run), "step_started", Some("prepare")).len(),
        1
    );

    let report = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "json"])
        .run();
    let report: serde_json::Value = serde_json::from_str(&report.stdout).expect("json");
    let go = report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == "go"))
        .expect("go");
    assert_eq!(go["approvals"][0]["by"], "alice");
    assert_eq!(go["approvals"][0]["reason"], "checked lag");
    assert!(report["human_wait_seconds"].as_f64().expect("wait") >= 0.3);
    let text = Drillbook::in_dir(&dir).args(&["report", &run]).run();
    assert!(text.stdout.contains("alice"), "{}", text.stdout);
}

#[test]
fn a_rejection_fails_the_run_and_skips_dependents() {
    let (_test, dir) = gated(GATED);
    let run = first_run(&dir);
    let output = Drillbook::in_dir(&dir)
        .args(&[
            "approve",
            &run,
            "go",
            "--reject",
            "--as",
            "bob",
            "--reason",
            "lag too high",
        ])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(!dir.join("acted").exists());
    let records = journal(&dir, &run);
    assert_eq!(
        events(&records, "step_skipped", Some("act"))[0]["reason"],
        "needs `go`, which was rejected"
    );
    assert!(output.stdout.contains("bob"), "{}", output.stdout);
}

#[test]
fn four_eyes_needs_two_different_people() {
    let (_test, dir) = gated(&GATED.replace(
        "prompt: \"Promote the standby? (run {{ run.id }})\"",
        "prompt: \"Promote?\"\n    approvers: 2",
    ));
    let run = first_run(&dir);
    let output = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "go", "--as", "alice"])
        .run();
    assert_eq!(
        output.stderr,
        "alice approved `go` (1 of 2 approvals); someone else must approve too\n"
    );
    let again = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "go", "--as", "alice"])
        .run();
    assert_eq!(again.status, 2);
    assert_eq!(
        again.stderr,
        "error: alice already approved `go`; it needs 2 different people\n"
    );
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(
        output.status, 4,
        "one approval is not enough: {}",
        output.stderr
    );
    // The same OS account under another name is the same person.
    let renamed = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "go", "--as", "bob"])
        .run();
    assert_eq!(renamed.status, 2, "{}", renamed.stderr);
    assert!(
        renamed
            .stderr
            .contains("already approved `go` as alice; four eyes need another person's account"),
        "{}",
        renamed.stderr
    );
    // Bob, from his own account, is the second pair of eyes.
    common::share_state(&dir.join(".drillbook"));
    let bob = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "go", "--as", "bob"])
        .by_uid(4242)
        .run();
    assert_eq!(bob.status, 0, "{}", bob.stderr);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    // Each decision names its account and host beside the name given.
    let records = common::journal(&dir, &run);
    let decided = common::events(&records, "approval_decided", Some("go"));
    let accounts: Vec<(&str, u64)> = decided
        .iter()
        .map(|d| {
            (
                d["by"].as_str().unwrap(),
                d["account"]["uid"].as_u64().unwrap(),
            )
        })
        .collect();
    // SAFETY: getuid has no preconditions.
    let me = u64::from(unsafe { libc::getuid() });
    assert_eq!(accounts, [("alice", me), ("bob", 4242)]);
    assert_eq!(decided[1]["account"]["user"], "uid 4242");
    assert!(!decided[1]["account"]["host"].as_str().unwrap().is_empty());
}

#[test]
fn an_expired_approval_rejects() {
    let (_test, dir) = gated(
        r#"version: 1
name: expiring
steps:
  - { id: prepare, kind: command, run: [touch, prepared] }
  - id: act
    kind: command
    run: [touch, acted]
    approval: { prompt: Sure?, timeout: 1s }
"#,
    );
    let run = first_run(&dir);
    // Two seconds later, by the clock drillbook reads: past the gate's one-second timeout.
    let late = Drillbook::in_dir(&dir)
        .env("DRILLBOOK_CLOCK_OFFSET", "2s")
        .args(&["approve", &run, "act", "--as", "alice"])
        .run();
    assert_eq!(late.status, 2);
    assert!(late.stderr.contains("expired"), "{}", late.stderr);
    let output = Drillbook::in_dir(&dir)
        .env("DRILLBOOK_CLOCK_OFFSET", "2s")
        .args(&["resume", &run])
        .run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(!dir.join("acted").exists());
    let records = journal(&dir, &run);
    let decided = events(&records, "approval_decided", Some("act"));
    assert_eq!(decided[0]["approved"], false);
    assert_eq!(decided[0]["by"], "timeout");
}

#[test]
fn pre_approval_is_recorded_as_such() {
    let (_test, dir) = gated(GATED);
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--approve-all", "--as", "cron"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let run = only_run(&dir);
    let records = journal(&dir, &run);
    let decided = events(&records, "approval_decided", Some("go"));
    assert_eq!(decided[0]["pre_approved"], true);
    assert_eq!(decided[0]["by"], "cron");
    assert!(dir.join("acted").exists());
}

#[test]
fn a_manual_step_waits_for_attestation() {
    let (_test, dir) = gated(
        r#"version: 1
name: manual
steps:
  - { id: call, kind: manual, instructions: "Call the DBA on-call." }
  - { id: after, kind: command, run: [touch, after] }
"#,
    );
    let output = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    let run = only_run(&dir);
    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["approve", &run, "call", "--as", "erin"])
            .run()
            .status,
        0
    );
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let records = journal(&dir, &run);
    let finished = events(&records, "step_finished", Some("call"));
    assert_eq!(finished[0]["outputs"]["done_by"], "erin");
    assert!(dir.join("after").exists());
}

#[test]
fn only_the_people_a_gate_allows_decide_it() {
    let (_test, dir) = gated(&GATED.replace(
        "prompt: \"Promote the standby? (run {{ run.id }})\"",
        "prompt: \"Promote?\"\n    allowed: [alice, Bob]",
    ));
    let run = first_run(&dir);
    for (by, verb) in [("mallory", "approve"), ("mallory", "reject")] {
        let mut args = vec!["approve", &run, "go", "--as", by];
        if verb == "reject" {
            args.push("--reject");
        }
        let refused = Drillbook::in_dir(&dir).args(&args).run();
        assert_eq!(refused.status, 2, "{}", refused.stderr);
        assert_eq!(
            refused.stderr,
            "error: mallory is not among the people allowed to decide `go` (alice, Bob)\n"
        );
    }
    assert!(events(&journal(&dir, &run), "approval_decided", Some("go")).is_empty());
    // Names match as people type them.
    let bob = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "go", "--as", "bob"])
        .run();
    assert_eq!(bob.status, 0, "{}", bob.stderr);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);

    // A list that cannot be satisfied is refused before anything runs.
    let (_test, dir) = gated(&GATED.replace(
        "prompt: \"Promote the standby? (run {{ run.id }})\"",
        "prompt: \"Promote?\"\n    approvers: 2\n    allowed: [alice]",
    ));
    let invalid = Drillbook::in_dir(&dir).args(&["validate", "p.yaml"]).run();
    assert_eq!(invalid.status, 2, "{}", invalid.stderr);
    assert!(
        invalid
            .stderr
            .contains("`approvers: 2` needs 2 different people, but `allowed` names 1"),
        "{}",
        invalid.stderr
    );
}

#[test]
fn a_signed_decision_is_verified_in_every_report() {
    let (_test, dir) = gated(GATED);
    let run = first_run(&dir);
    let (key, _) = common::keypair(&dir, "bob", None);
    let fingerprint = String::from_utf8(
        std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&key)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_string();

    // A key with a passphrase is refused, not prompted for.
    let locked = dir.join("locked_key");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    let refused = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "go", "--as", "bob", "--sign-with"])
        .args(&[locked.to_str().unwrap()])
        .run();
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("has a passphrase"),
        "{}",
        refused.stderr
    );

    let signed = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "go", "--as", "bob", "--sign-with"])
        .args(&[key.to_str().unwrap()])
        .run();
    assert_eq!(signed.status, 0, "{}", signed.stderr);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let md = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "md"])
        .run()
        .stdout;
    assert!(
        md.contains(&format!("signed with {fingerprint} (verified)")),
        "{md}"
    );

    // The decision rewritten in the journal: the signature no longer holds (and the chain
    // breaks where it was changed).
    let path = dir.join(".drillbook/runs").join(&run).join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("-----BEGIN SSH SIGNATURE-----"));
    std::fs::write(&path, text.replace("\"by\":\"bob\"", "\"by\":\"mallory\"")).unwrap();
    let md = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "md"])
        .run()
        .stdout;
    assert!(md.contains("SIGNATURE DOES NOT HOLD"), "{md}");
    assert!(md.contains("HASH CHAIN BROKEN"), "{md}");
}

/// A new ed25519 key without a passphrase: its private file and public line.

#[test]
fn a_gate_that_takes_signed_decisions_takes_them_only_from_the_keys_on_record() {
    let scratch = tempfile::tempdir().unwrap();
    let (bob_key, bob_public) = common::keypair(scratch.path(), "bob", None);
    let (eve_key, _) = common::keypair(scratch.path(), "eve", None);
    let playbook = GATED
        .replace(
            "objectives: { rto: 30m }",
            &format!("objectives: {{ rto: 30m }}\nsigners: {{ bob: \"{bob_public}\" }}"),
        )
        .replace(
            "prompt: \"Promote the standby? (run {{ run.id }})\"",
            "prompt: \"Promote?\"\n    signed: true",
        );
    let (_test, dir) = gated(&playbook);
    let run = first_run(&dir);
    let approve = |by: &str, key: Option<&Path>| {
        let mut args = vec![
            "approve".to_string(),
            run.clone(),
            "go".into(),
            "--as".into(),
            by.into(),
        ];
        if let Some(key) = key {
            args.extend(["--sign-with".into(), key.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Drillbook::in_dir(&dir).args(&args).run()
    };
    // Unsigned, signed by someone else's key, or by someone with no key on record: refused.
    let unsigned = approve("bob", None);
    assert_eq!(unsigned.status, 2, "{}", unsigned.stderr);
    assert!(
        unsigned.stderr.contains("must be signed"),
        "{}",
        unsigned.stderr
    );
    let forged = approve("bob", Some(&eve_key));
    assert_eq!(forged.status, 2, "{}", forged.stderr);
    assert!(
        forged.stderr.contains("does not verify against bob's key"),
        "{}",
        forged.stderr
    );
    let keyless = approve("eve", Some(&eve_key));
    assert_eq!(keyless.status, 2, "{}", keyless.stderr);
    assert!(
        keyless
            .stderr
            .contains("takes signed decisions only, and eve has no key"),
        "{}",
        keyless.stderr
    );
    assert!(events(&journal(&dir, &run), "approval_decided", Some("go")).is_empty());
    // Bob, with his key: recorded, and the report checks it against his key on record.
    let signed = approve("bob", Some(&bob_key));
    assert_eq!(signed.status, 0, "{}", signed.stderr);
    assert_eq!(
        Drillbook::in_dir(&dir).args(&["resume", &run]).run().status,
        0
    );
    let md = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "md"])
        .run()
        .stdout;
    assert!(md.contains("(verified)"), "{md}");

    // A gate that takes signed decisions with nobody's key on record cannot be satisfied.
    let (_test, dir) = gated(&GATED.replace(
        "prompt: \"Promote the standby? (run {{ run.id }})\"",
        "prompt: \"Promote?\"\n    signed: true",
    ));
    let invalid = Drillbook::in_dir(&dir).args(&["validate", "p.yaml"]).run();
    assert_eq!(invalid.status, 2, "{}", invalid.stderr);
    assert!(
        invalid
            .stderr
            .contains("takes signed decisions only, but the playbook has no `signers`"),
        "{}",
        invalid.stderr
    );
}

#[test]
fn a_resume_does_not_count_a_signed_decision_that_no_longer_holds() {
    let (_test, dir) = gated(GATED);
    let run = first_run(&dir);
    let (key, _) = common::keypair(&dir, "bob", None);
    let signed = Drillbook::in_dir(&dir)
        .args(&[
            "approve",
            &run,
            "go",
            "--as",
            "bob",
            "--reason",
            "standby is current",
            "--sign-with",
            key.to_str().unwrap(),
        ])
        .run();
    assert_eq!(signed.status, 0, "{}", signed.stderr);
    // Someone rewrites why bob approved.
    let path = dir.join(".drillbook/runs").join(&run).join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("standby is current", "standby is 2h behind"),
    )
    .unwrap();
    let resumed = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(
        resumed.status, 4,
        "the altered approval counts for nothing: the gate waits again\n{}",
        resumed.stderr
    );
    assert!(!dir.join("acted").exists());
    let asked = events(&journal(&dir, &run), "approval_requested", Some("go")).len();
    assert_eq!(asked, 2, "asked again");
}
