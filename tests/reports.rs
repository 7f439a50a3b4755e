//! Every report format, produced from the journal of a failed run, parses and says what
//! happened.

mod common;

use common::{Drillbook, only_run};

#[test]
fn all_formats_of_a_failed_run() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: failing-drill
objectives: { rto: 30m }
steps:
  - { id: prepare, kind: command, run: ["true"] }
  - id: restore
    kind: command
    run: [sh, -c, "echo 'pg_restore: error: <relation> missing' >&2; exit 1"]
    retry: { attempts: 2, backoff: 100ms }
  - { id: smoke, kind: command, run: ["true"], clock: stop }
cleanup:
  - { id: tidy, kind: command, run: ["true"] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    let run = only_run(&dir);

    // The summary printed at the end of the run is the text report.
    let text = Drillbook::in_dir(&dir).args(&["report", &run]).run().stdout;
    assert_eq!(output.stdout, text);
    assert!(
        text.contains("failing-drill") && text.contains("restore"),
        "{text}"
    );
    assert!(text.contains("<relation> missing"), "{text}");

    let json = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "json"])
        .run()
        .stdout;
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON parses");
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["exit_code"], 1);
    let steps = json["steps"].as_array().expect("steps");
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["prepare", "restore", "smoke", "tidy"]);
    assert_eq!(steps[1]["status"], "failed");
    assert_eq!(steps[1]["attempts"].as_array().map(Vec::len), Some(2));
    assert_eq!(steps[2]["status"], "skipped");
    assert_eq!(json["objectives"]["rto"]["met"], serde_json::Value::Null);

    let junit = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "junit"])
        .run()
        .stdout;
    let xml = roxmltree::Document::parse(&junit).expect("JUnit parses as XML");
    let cases: Vec<_> = xml
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    for id in ["prepare", "restore", "smoke", "tidy"] {
        assert!(names.contains(&id), "{names:?}");
    }
    let restore = cases
        .iter()
        .find(|c| c.attribute("name") == Some("restore"))
        .expect("restore case");
    assert!(restore.children().any(|c| c.has_tag_name("failure")));

    let out = dir.join("report.html");
    let written = Drillbook::in_dir(&dir)
        .args(&[
            "report",
            &run,
            "--format",
            "html",
            "-o",
            out.to_str().expect("path"),
        ])
        .run();
    assert_eq!(written.status, 0, "{}", written.stderr);
    let html = std::fs::read_to_string(out).expect("html");
    assert!(html.contains("<svg"), "no SVG timeline");
    assert!(
        !html.contains("<script"),
        "the report must not need JavaScript"
    );
    assert!(
        html.contains("&lt;relation&gt;"),
        "error text is not escaped"
    );
    assert!(html.contains("RTO 30m"));

    let md = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "md"])
        .run()
        .stdout;
    for section in ["Timeline", "What failed", "Root cause", "Remediation"] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
}

/// `runs` filters and speaks JSON; `report`, `status` and `approve` take `latest` or any
/// unique prefix of a run id.
#[test]
fn runs_are_listed_filtered_and_named_by_prefix_or_latest() {
    let test = Drillbook::new()
        .playbook(
            "ok.yaml",
            "version: 1\nname: fine\nsteps:\n  - { id: a, kind: command, run: [\"true\"] }\n",
        )
        .playbook(
            "bad.yaml",
            "version: 1\nname: broken\nsteps:\n  - { id: a, kind: command, run: [\"false\"] }\n",
        );
    let dir = test.dir().to_path_buf();
    let ran = |file: &str, id: &str| {
        Drillbook::in_dir(&dir)
            .args(&["run", file, "--run-id", id])
            .run()
            .status
    };
    assert_eq!(ran("ok.yaml", "first-fine"), 0);
    assert_eq!(ran("bad.yaml", "second-broken"), 1);

    let list = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["runs", "--format", "json"];
        all.extend_from_slice(args);
        let output = Drillbook::in_dir(&dir).args(&all).run();
        assert_eq!(output.status, 0, "{}", output.stderr);
        let json: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON");
        json["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|run| {
                format!(
                    "{}:{}",
                    run["run_id"].as_str().unwrap(),
                    run["status"].as_str().unwrap()
                )
            })
            .collect()
    };
    // Newest first.
    assert_eq!(list(&[]), ["second-broken:failed", "first-fine:succeeded"]);
    assert_eq!(list(&["--status", "failed"]), ["second-broken:failed"]);
    assert_eq!(list(&["--playbook", "fine"]), ["first-fine:succeeded"]);
    assert_eq!(list(&["--since", "1h"]).len(), 2);
    assert!(list(&["--since", "2099-01-01T00:00:00Z"]).is_empty());
    let bad = Drillbook::in_dir(&dir)
        .args(&["runs", "--status", "exploded"])
        .run();
    assert_eq!(bad.status, 2);
    assert!(
        bad.stderr.contains("expected one of succeeded, failed"),
        "{}",
        bad.stderr
    );

    let report = |run: &str| {
        Drillbook::in_dir(&dir)
            .args(&["report", run, "--format", "json"])
            .run()
    };
    let latest = report("latest");
    assert_eq!(latest.status, 0, "{}", latest.stderr);
    assert!(
        latest.stdout.contains("\"run_id\": \"second-broken\""),
        "{}",
        latest.stdout
    );
    let prefix = report("first");
    assert_eq!(prefix.status, 0, "{}", prefix.stderr);
    assert!(
        prefix.stdout.contains("\"run_id\": \"first-fine\""),
        "{}",
        prefix.stdout
    );
    let status = Drillbook::in_dir(&dir).args(&["status", "sec"]).run();
    assert_eq!(status.status, 0, "{}", status.stderr);
    assert!(status.stdout.contains("second-broken"), "{}", status.stdout);

    // Two runs start with "f"... once there are two.
    assert_eq!(ran("ok.yaml", "fine-again"), 0);
    let ambiguous = report("f");
    assert_eq!(ambiguous.status, 2);
    assert!(
        ambiguous
            .stderr
            .contains("is the start of 2 run ids: fine-again, first-fine"),
        "{}",
        ambiguous.stderr
    );
}

/// Every subcommand's help has examples; `run --help` says what each exit code means.
#[test]
fn the_cli_explains_itself() {
    for command in [
        "validate", "plan", "schema", "run", "resume", "approve", "runs", "history", "due",
        "watch", "status", "report", "wal",
    ] {
        let help = Drillbook::new().args(&[command, "--help"]).run();
        assert_eq!(help.status, 0, "{command}: {}", help.stderr);
        assert!(
            help.stdout.contains("Example"),
            "{command} --help:\n{}",
            help.stdout
        );
    }
    let run = Drillbook::new().args(&["run", "--help"]).run().stdout;
    for code in [
        "0    succeeded",
        "1    a step failed",
        "2    the playbook",
        "3    succeeded, but an objective",
        "4    waiting for a decision",
        "130  interrupted",
    ] {
        assert!(run.contains(code), "`{code}` in\n{run}");
    }
    let approve = Drillbook::new().args(&["approve", "--help"]).run().stdout;
    assert!(
        approve.contains("--reason <REASON>") && approve.contains("Why: kept in the journal"),
        "{approve}"
    );
    assert!(
        approve.contains("The step whose question is answered"),
        "{approve}"
    );
}
