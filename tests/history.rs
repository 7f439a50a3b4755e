//! Drill history, `due` and the RTO prediction, from real runs of small playbooks.

mod common;

use common::{Drillbook, journal};

/// Two short steps and a clock stop: a real run takes about half a second.
const QUICK: &str = r#"version: 1
name: quick-drill
objectives: { rto: 30m }
steps:
  - { id: restore, kind: command, run: [sleep, "0.2"] }
  - { id: smoke, kind: command, run: [sleep, "0.1"], needs: [restore], clock: stop }
  - { id: report, kind: command, run: ["true"], needs: [smoke] }
"#;

const FAILING: &str = r#"version: 1
name: failing-drill
steps:
  - { id: broken, kind: command, run: ["false"] }
"#;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn history_lists_every_run_with_its_verdict_and_a_prediction() {
    let test = Drillbook::new().playbook("quick.yaml", QUICK);
    let dir = test.dir().to_path_buf();
    let first = Drillbook::in_dir(&dir)
        .args(&["run", "quick.yaml", "--run-id", "a"])
        .run();
    assert_eq!(first.status, 0, "{}", first.stderr);
    assert!(!first.stderr.contains("predicted"), "{}", first.stderr);
    let second = Drillbook::in_dir(&dir)
        .args(&["run", "quick.yaml", "--run-id", "b"])
        .run();
    assert_eq!(second.status, 0, "{}", second.stderr);
    // The second run is told what the first one predicts.
    assert!(
        second.stderr.contains("predicted ") && second.stderr.contains("from 1 run"),
        "{}",
        second.stderr
    );

    let output = Drillbook::in_dir(&dir)
        .args(&["history", "--format", "json"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let history = json(&output.stdout);
    let playbooks = history["playbooks"].as_array().expect("playbooks");
    assert_eq!(playbooks.len(), 1);
    let playbook = &playbooks[0];
    assert_eq!(playbook["name"], "quick-drill");
    let runs = playbook["runs"].as_array().expect("runs");
    let ids: Vec<&str> = runs.iter().filter_map(|r| r["run_id"].as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    for run in runs {
        assert_eq!(run["verdict"], "succeeded");
        assert_eq!(run["exit_code"], 0);
        assert_eq!(run["mode"], "drill");
        assert_eq!(run["rto_objective_seconds"], 1800.0);
        let rto = run["rto_seconds"].as_f64().expect("rto achieved");
        assert!((0.3..10.0).contains(&rto), "{rto}");
        assert_eq!(run["rpo_seconds"], serde_json::Value::Null);
        assert_eq!(run["playbook_hash"].as_str().map(str::len), Some(64));
    }
    assert!(
        playbook["trend"]
            .as_str()
            .is_some_and(|t| t.starts_with("RTO ") && t.ends_with(" the drill run before")),
        "{}",
        playbook["trend"]
    );
    let prediction = &playbook["prediction"];
    assert_eq!(prediction["runs"], 2);
    assert_eq!(prediction["unknown_steps"], 0);
    assert_eq!(prediction["rto_seconds"], 1800.0);
    // `report` comes after the clock stop: the RTO does not wait for it.
    assert_eq!(
        prediction["critical_path"],
        serde_json::json!(["restore", "smoke"])
    );
    let median = prediction["median_seconds"].as_f64().expect("median");
    assert!((0.3..10.0).contains(&median), "{median}");
    assert!(prediction["p90_seconds"].as_f64().expect("p90") >= median);

    // By name or by file, as a table with the trend and the next run's prediction.
    for which in ["quick-drill", "quick.yaml"] {
        let text = Drillbook::in_dir(&dir).args(&["history", which]).run();
        assert_eq!(text.status, 0, "{}", text.stderr);
        assert!(text.stdout.starts_with("quick-drill\n"), "{}", text.stdout);
        assert_eq!(
            text.stdout.matches("  drill  ").count(),
            2,
            "{}",
            text.stdout
        );
        assert!(text.stdout.contains("\ntrend: RTO "), "{}", text.stdout);
        assert!(
            text.stdout.contains("\nnext: predicted ")
                && text.stdout.contains(" against RTO 30m, from 2 runs\n"),
            "{}",
            text.stdout
        );
    }
    let markdown = Drillbook::in_dir(&dir)
        .args(&["history", "quick-drill", "--format", "md"])
        .run();
    assert!(
        markdown.stdout.starts_with("## quick-drill\n"),
        "{}",
        markdown.stdout
    );
    assert!(markdown.stdout.contains("| --- |"), "{}", markdown.stdout);
}

#[test]
fn history_refuses_an_unknown_playbook() {
    let test = Drillbook::new().playbook("quick.yaml", QUICK);
    let dir = test.dir().to_path_buf();
    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["run", "quick.yaml"])
            .run()
            .status,
        0
    );
    let unknown = Drillbook::in_dir(&dir)
        .args(&["history", "quick-dril"])
        .run();
    assert_eq!(unknown.status, 2);
    assert!(
        unknown
            .stderr
            .starts_with("error: no finished runs of a playbook named `quick-dril` in .drillbook"),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stderr.contains("quick-drill"), "{}", unknown.stderr);
    let missing = Drillbook::in_dir(&dir)
        .args(&["history", "missing.yaml"])
        .run();
    assert_eq!(missing.status, 2);
    assert!(
        missing.stderr.contains("missing.yaml"),
        "{}",
        missing.stderr
    );
}

#[test]
fn plan_adds_the_prediction_once_there_is_history() {
    let test = Drillbook::new().playbook("quick.yaml", QUICK);
    let dir = test.dir().to_path_buf();
    let before = Drillbook::in_dir(&dir).args(&["plan", "quick.yaml"]).run();
    assert_eq!(before.status, 0, "{}", before.stderr);
    assert!(!before.stdout.contains("predicted"), "{}", before.stdout);
    let plan = json(
        &Drillbook::in_dir(&dir)
            .args(&["plan", "quick.yaml", "--format", "json"])
            .run()
            .stdout,
    );
    assert_eq!(plan["prediction"], serde_json::Value::Null);

    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["run", "quick.yaml"])
            .run()
            .status,
        0
    );
    let after = Drillbook::in_dir(&dir).args(&["plan", "quick.yaml"]).run();
    assert_eq!(after.status, 0, "{}", after.stderr);
    assert!(after.stdout.starts_with(&before.stdout), "{}", after.stdout);
    let added = &after.stdout[before.stdout.len()..];
    assert!(
        added.starts_with("predicted ") && added.ends_with(" against RTO 30m, from 1 run\n"),
        "{added}"
    );
    let plan = json(
        &Drillbook::in_dir(&dir)
            .args(&["plan", "quick.yaml", "--format", "json"])
            .run()
            .stdout,
    );
    assert_eq!(plan["prediction"]["runs"], 1);
    assert_eq!(
        plan["prediction"]["critical_path"],
        serde_json::json!(["restore", "smoke"])
    );
}

#[test]
fn due_follows_passes_edits_and_failures() {
    let test = Drillbook::new()
        .playbook("quick.yaml", QUICK)
        .playbook("failing.yaml", FAILING);
    let dir = test.dir().to_path_buf();
    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["run", "quick.yaml"])
            .run()
            .status,
        0
    );

    let fresh = Drillbook::in_dir(&dir)
        .args(&["due", "--every", "1d", "quick.yaml"])
        .run();
    assert_eq!(fresh.status, 0, "{}\n{}", fresh.stdout, fresh.stderr);
    assert_eq!(fresh.stdout, "nothing due\n");
    let report = json(
        &Drillbook::in_dir(&dir)
            .args(&["due", "--format", "json", "quick.yaml"])
            .run()
            .stdout,
    );
    assert_eq!(report["due"], false);
    assert_eq!(report["every"], "92d");
    assert_eq!(report["playbooks"][0]["name"], "quick-drill");

    // A playbook that only ever failed never passed.
    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["run", "failing.yaml"])
            .run()
            .status,
        1
    );
    let failing = Drillbook::in_dir(&dir)
        .args(&["due", "--every", "1d", "failing.yaml"])
        .run();
    assert_eq!(failing.status, 1, "{}", failing.stderr);
    assert_eq!(failing.stdout, "failing-drill: never passed\n");

    // Without files: every playbook with runs, at the file its runs recorded.
    let all = Drillbook::in_dir(&dir)
        .args(&["due", "--every", "1d"])
        .run();
    assert_eq!(all.status, 1, "{}", all.stderr);
    assert_eq!(all.stdout, "failing-drill: never passed\n");

    // An edit makes the last pass stale.
    let path = dir.join("quick.yaml");
    let text = std::fs::read_to_string(&path).expect("playbook");
    std::fs::write(&path, format!("{text}# tuned the restore\n")).expect("edit");
    let changed = Drillbook::in_dir(&dir)
        .args(&["due", "--every", "1d", "quick.yaml"])
        .run();
    assert_eq!(changed.status, 1, "{}", changed.stderr);
    assert!(
        changed
            .stdout
            .starts_with("quick-drill: changed since it last passed on ")
            && changed.stdout.contains(", today (run "),
        "{}",
        changed.stdout
    );

    // A playbook file that is gone is reported as such.
    std::fs::remove_file(&path).expect("remove");
    let gone = Drillbook::in_dir(&dir)
        .args(&["due", "--every", "1d"])
        .run();
    assert_eq!(gone.status, 1, "{}", gone.stderr);
    assert!(
        gone.stdout.contains("quick-drill: cannot read `")
            && gone.stdout.contains("cannot tell whether it changed"),
        "{}",
        gone.stdout
    );

    let bad = Drillbook::in_dir(&dir)
        .args(&["due", "--every", "soon"])
        .run();
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("`soon` is not a duration"),
        "{}",
        bad.stderr
    );
}

/// A step guarded by `when: run.over_rto` runs only once history projects the clock past the
/// objective, and `run.eta` / `run.projected` are filled from the projection.
#[test]
fn templates_see_the_projection() {
    let playbook = r#"version: 1
name: slow-drill
objectives: { rto: 1s }
steps:
  - { id: first, kind: command, run: [sleep, "0.1"] }
  - id: warn
    kind: command
    needs: [first]
    when: run.over_rto
    run: [echo, "eta {{ run.eta }} projected {{ run.projected }}"]
  - { id: slow, kind: command, run: [sleep, "1.2"], needs: [warn], clock: stop }
"#;
    let test = Drillbook::new().playbook("slow.yaml", playbook);
    let dir = test.dir().to_path_buf();
    // No history: 0.1 s elapsed is not over 1 s, the warning is skipped; the run misses.
    let first = Drillbook::in_dir(&dir)
        .args(&["run", "slow.yaml", "--run-id", "one"])
        .run();
    assert_eq!(first.status, 3, "{}", first.stderr);
    let warn = |run: &str| {
        journal(&dir, run)
            .into_iter()
            .rfind(|r| r["step"] == "warn")
            .expect("warn step")
    };
    assert_eq!(warn("one")["event"], "step_skipped");

    // Now history says `slow` takes 1.2 s: projected past the RTO as soon as `first` ends.
    let second = Drillbook::in_dir(&dir)
        .args(&["run", "slow.yaml", "--run-id", "two"])
        .run();
    assert_eq!(second.status, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("may miss the RTO"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("WARNING: projected ")
            && second.stderr.contains(" exceeds the RTO 1s"),
        "{}",
        second.stderr
    );
    let done = warn("two");
    assert_eq!(done["status"], "succeeded", "{done}");
    let stdout = done["outputs"]["stdout"].as_str().expect("stdout");
    // "eta 14:05 UTC projected 1.3s"
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{stdout}");
    assert_eq!(
        (words[0], words[2], words[3]),
        ("eta", "UTC", "projected"),
        "{stdout}"
    );
    assert!(
        words[1].len() == 5 && words[1].as_bytes()[2] == b':',
        "{stdout}"
    );
    assert!(words[4].ends_with('s') && words[4] != "unknown", "{stdout}");
}

#[test]
fn the_html_report_compares_the_rto_with_earlier_runs() {
    let test = Drillbook::new().playbook("quick.yaml", QUICK);
    let dir = test.dir().to_path_buf();
    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["run", "quick.yaml", "--run-id", "a"])
            .run()
            .status,
        0
    );
    let alone = Drillbook::in_dir(&dir)
        .args(&["report", "a", "--format", "html"])
        .run()
        .stdout;
    assert!(!alone.contains("RTO against previous runs"));
    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["run", "quick.yaml", "--run-id", "b"])
            .run()
            .status,
        0
    );
    let html = Drillbook::in_dir(&dir)
        .args(&["report", "b", "--format", "html"])
        .run()
        .stdout;
    assert!(
        html.contains("<h2>RTO against previous runs</h2>"),
        "{html}"
    );
    assert_eq!(html.matches("<div class=\"rto-row").count(), 2, "{html}");
    assert!(html.contains("<div class=\"rto-row current\">"), "{html}");
    // Other formats are about the run alone.
    let markdown = Drillbook::in_dir(&dir)
        .args(&["report", "b", "--format", "md"])
        .run()
        .stdout;
    assert!(!markdown.contains("previous runs"), "{markdown}");
}

#[test]
fn each_playbook_is_due_at_its_own_cadence_and_a_never_run_one_is_reported() {
    // A nightly check every second, and a quarterly one; a third never ran.
    let nightly = "version: 1\nname: nightly\nschedule: { every: 1s }\nsteps:\n  - { id: a, kind: command, run: [\"true\"] }\n";
    let quarterly = "version: 1\nname: quarterly\nschedule: { every: 92d }\nsteps:\n  - { id: a, kind: command, run: [\"true\"] }\n";
    let never =
        "version: 1\nname: never-run\nsteps:\n  - { id: a, kind: command, run: [\"true\"] }\n";
    let test = Drillbook::new()
        .playbook("playbooks/nightly.yaml", nightly)
        .playbook("playbooks/quarterly.yaml", quarterly)
        .playbook("playbooks/never.yaml", never);
    let dir = test.dir().to_path_buf();
    for file in ["playbooks/nightly.yaml", "playbooks/quarterly.yaml"] {
        let ran = Drillbook::in_dir(&dir).args(&["run", file]).run();
        assert_eq!(ran.status, 0, "{}", ran.stderr);
    }
    // Right after: nightly at its own cadence waits; `--if-due` without a value uses it too.
    let skipped = Drillbook::in_dir(&dir)
        .args(&["run", "playbooks/nightly.yaml", "--if-due"])
        .run();
    assert_eq!(skipped.status, 0, "{}", skipped.stderr);
    assert!(
        skipped.stderr.contains("nightly is not due: passed"),
        "{}",
        skipped.stderr
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let due = Drillbook::in_dir(&dir).args(&["due"]).run();
    assert_eq!(due.status, 1, "{}\n{}", due.stdout, due.stderr);
    assert!(
        due.stdout.contains("nightly: last passed"),
        "{}",
        due.stdout
    );
    assert!(due.stdout.contains("(every 1s)"), "{}", due.stdout);
    assert!(
        due.stdout.contains("never-run: never passed"),
        "{}",
        due.stdout
    );
    assert!(!due.stdout.contains("quarterly"), "{}", due.stdout);
    let report = json(
        &Drillbook::in_dir(&dir)
            .args(&["due", "--format", "json"])
            .run()
            .stdout,
    );
    let every: Vec<(&str, &str)> = report["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["every"].as_str().unwrap()))
        .collect();
    assert_eq!(
        every,
        [
            ("nightly", "1s"),
            ("quarterly", "92d"),
            ("never-run", "92d")
        ]
    );
    // `--every` judges them all alike.
    let all = Drillbook::in_dir(&dir)
        .args(&["due", "--every", "1d"])
        .run();
    assert!(!all.stdout.contains("nightly"), "{}", all.stdout);
    // And `--if-due` now runs it.
    let ran = Drillbook::in_dir(&dir)
        .args(&["run", "playbooks/nightly.yaml", "--if-due"])
        .run();
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert!(!ran.stderr.contains("not due"), "{}", ran.stderr);
}

#[test]
fn a_schedule_must_say_how_often() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: p\nschedule: { every: 0s, at: noon }\nsteps:\n  - { id: a, kind: command, run: [\"true\"] }\n",
    );
    let output = test.args(&["validate", "p.yaml"]).run();
    assert_eq!(output.status, 2, "{}", output.stderr);
    assert!(output.stderr.contains("at"), "{}", output.stderr);
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: p\nschedule: { every: 0s }\nsteps:\n  - { id: a, kind: command, run: [\"true\"] }\n",
    );
    let output = test.args(&["validate", "p.yaml"]).run();
    assert_eq!(output.status, 2, "{}", output.stderr);
    assert!(
        output.stderr.contains("`every` must be longer than 0s"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("p.yaml:3:"), "{}", output.stderr);
}
