//! `drillbook run`: steps in order, outputs between steps, failure, timeout, Ctrl-C, cleanup,
//! drill-mode restrictions, dry runs.

mod common;

use std::time::Duration;

use common::{Drillbook, alive, events, journal, only_run, run_ids, wait_for};

#[test]
fn runs_steps_in_order_and_passes_outputs() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: outputs
vars: { greeting: hello }
steps:
  - id: first
    kind: command
    run: [sh, -c, "printf '%s' \"$0\" >> trail", "{{ vars.greeting }}"]
  - id: echo
    kind: command
    run: [printf, "%s", "{{ vars.greeting }} world"]
  - id: second
    kind: command
    run: [sh, -c, "printf ' %s' \"$0\" >> trail", "{{ steps.echo.outputs.stdout }}"]
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("trail")).expect("trail"),
        "hello hello world"
    );
    let run = only_run(&dir);
    let records = journal(&dir, &run);
    let finished = events(&records, "step_finished", None);
    let order: Vec<&str> = finished
        .iter()
        .map(|r| r["step"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(order, ["first", "echo", "second"]);
    assert!(finished.iter().all(|r| r["status"] == "succeeded"));
    assert_eq!(records.last().expect("records")["event"], "run_finished");
    assert_eq!(records.last().expect("records")["exit_code"], 0);
    // The rendered parameters are in the journal.
    let started = events(&records, "step_started", Some("second"));
    assert_eq!(started[0]["params"]["run"][3], "hello world");
    // Captured output is kept in the run directory.
    let captured = dir
        .join(".drillbook/runs")
        .join(&run)
        .join("output/echo.1.stdout");
    assert_eq!(
        std::fs::read_to_string(captured).expect("captured"),
        "hello world"
    );
}

#[test]
fn a_failure_stops_the_run_skips_dependents_and_still_cleans_up() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: failing
steps:
  - { id: ok, kind: command, run: ["true"] }
  - { id: breaks, kind: command, run: [sh, -c, "echo 'disk full' >&2; exit 3"] }
  - { id: after, kind: command, run: [touch, after] }
  - { id: tolerated, kind: command, run: ["false"], needs: [], continue_on_failure: true }
cleanup:
  - { id: tidy, kind: command, run: [touch, tidied] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--max-parallel", "1"])
        .run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(
        !dir.join("after").exists(),
        "a dependent of a failed step ran"
    );
    assert!(dir.join("tidied").exists(), "cleanup did not run");
    let records = journal(&dir, &only_run(&dir));
    let failed = events(&records, "step_finished", Some("breaks"));
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(failed[0]["error"], "`sh` exited with status 3");
    assert_eq!(failed[0]["evidence"][0], "stderr: disk full");
    let skipped = events(&records, "step_skipped", Some("after"));
    assert_eq!(skipped[0]["reason"], "needs `breaks`, which failed");
    assert!(output.stdout.contains("disk full"), "{}", output.stdout);
}

#[test]
fn a_step_over_its_timeout_is_timed_out_and_its_processes_are_gone() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: slow
steps:
  - id: hang
    kind: command
    timeout: 1s
    # A grandchild too: the whole process group must go.
    run: [sh, -c, "sleep 30 & echo $! > grandchild.pid; echo $$ > child.pid; wait"]
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    let records = journal(&dir, &only_run(&dir));
    let finished = events(&records, "step_finished", Some("hang"));
    assert_eq!(finished[0]["status"], "timed_out");
    assert_eq!(finished[0]["error"], "timed out after 1s");
    let started: jiff::Timestamp = events(&records, "step_started", Some("hang"))[0]["at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("start time");
    let ended: jiff::Timestamp = finished[0]["at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("end time");
    let took = ended.duration_since(started);
    assert!(
        took >= jiff::SignedDuration::from_secs(1) && took < jiff::SignedDuration::from_secs(2),
        "took {took:?}"
    );
    for file in ["child.pid", "grandchild.pid"] {
        let pid: i32 = std::fs::read_to_string(dir.join(file))
            .expect(file)
            .trim()
            .parse()
            .expect("pid");
        wait_for(Duration::from_secs(1), "the step's processes to go", || {
            !alive(pid)
        });
    }
}

#[test]
fn ctrl_c_cancels_running_steps_runs_cleanup_and_exits_130() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: interrupted
steps:
  - id: long
    kind: command
    run: [sh, -c, "sleep 60 & echo $! > grandchild.pid; wait"]
  - { id: never, kind: command, run: [touch, never] }
cleanup:
  - { id: tidy, kind: command, run: [touch, tidied] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let child = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    wait_for(Duration::from_secs(10), "the long step to start", || {
        dir.join("grandchild.pid").exists()
            && !std::fs::read_to_string(dir.join("grandchild.pid"))
                .unwrap_or_default()
                .is_empty()
    });
    child.interrupt();
    let status = child.wait_within(Duration::from_secs(10)).status;
    assert_eq!(status, 130);
    assert!(dir.join("tidied").exists(), "cleanup did not run");
    assert!(!dir.join("never").exists());
    let grandchild: i32 = std::fs::read_to_string(dir.join("grandchild.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    wait_for(Duration::from_secs(2), "the step's processes to go", || {
        !alive(grandchild)
    });
    let records = journal(&dir, &only_run(&dir));
    assert_eq!(events(&records, "interrupted", None).len(), 1);
    assert_eq!(
        events(&records, "step_finished", Some("long"))[0]["status"],
        "cancelled"
    );
    assert_eq!(
        events(&records, "step_finished", Some("tidy"))[0]["status"],
        "succeeded"
    );
    assert_eq!(records.last().expect("records")["exit_code"], 130);
}

#[test]
fn drill_mode_skips_live_only_steps_and_when_conditions_apply() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: modes
steps:
  - { id: touch_prod, kind: command, run: [touch, prod], live_only: true }
  - { id: only_incident, kind: command, run: [touch, incident], when: "run.mode == 'incident'" }
  - { id: always, kind: command, run: [touch, always] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(!dir.join("prod").exists() && !dir.join("incident").exists());
    assert!(dir.join("always").exists());
    let records = journal(&dir, &only_run(&dir));
    assert_eq!(
        events(&records, "step_skipped", Some("touch_prod"))[0]["reason"],
        "live-only: a drill does not run it (use --mode incident or live)"
    );
    assert_eq!(
        events(&records, "step_skipped", Some("only_incident"))[0]["reason"],
        "condition `run.mode == 'incident'` is false"
    );
    assert!(output.stdout.contains("live-only"), "{}", output.stdout);
}

#[test]
fn a_dry_run_renders_and_touches_nothing() {
    let test = Drillbook::new()
        .playbook(
            "p.yaml",
            r#"version: 1
name: dry
vars: { target: staging }
secrets: [TOKEN]
steps:
  - { id: a, kind: command, run: [touch, "{{ vars.target }}"], env: { TOKEN: "{{ secrets.TOKEN }}" } }
  - { id: b, kind: command, run: [echo, "{{ steps.a.outputs.stdout }}"] }
"#,
        );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--dry-run", "--var", "target=drill-db"])
        .env("TOKEN", "tok-very-secret")
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(dir.join("p.yaml").exists());
    assert!(
        output.stdout.contains("run: [\"touch\",\"drill-db\"]"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("<a.stdout>"), "{}", output.stdout);
    assert!(!output.stdout.contains("tok-very-secret"));
    assert!(output.stdout.contains("***"));
    assert!(!dir.join("drill-db").exists());
    assert!(run_ids(&dir).is_empty());
    assert!(!dir.join(".drillbook").exists());
}

#[test]
fn usage_errors_are_clear() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: u\nsecrets: [DB_URL]\nvars: { store: x }\nsteps:\n  - { id: a, kind: command, run: [\"true\"] }\n",
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 2);
    assert!(output.stderr.contains("DB_URL"), "{}", output.stderr);
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--var", "stor=y"])
        .env("DB_URL", "postgres://x")
        .deadline(Duration::from_secs(10))
        .run();
    assert_eq!(output.status, 2);
    assert_eq!(
        output.stderr,
        "error: --var stor: the playbook declares no variable `stor`; did you mean `store`?\n"
    );
    assert!(
        run_ids(&dir).is_empty(),
        "nothing may start on a usage error"
    );
}

/// A run id belongs to the playbook that used it: another playbook is refused under it
/// (exit 2, both named) and does not run; the same playbook is still "already ran".
#[test]
fn a_run_id_of_another_playbook_is_refused() {
    let test = Drillbook::new()
        .playbook(
            "a.yaml",
            "version: 1\nname: alpha\nsteps:\n  - { id: a, kind: command, run: [touch, a-ran] }\n",
        )
        .playbook(
            "b.yaml",
            "version: 1\nname: beta\nsteps:\n  - { id: b, kind: command, run: [touch, b-ran] }\n",
        );
    let dir = test.dir().to_path_buf();
    Drillbook::in_dir(&dir)
        .args(&["run", "a.yaml", "--run-id", "nightly-1"])
        .expect_status(0)
        .run();
    Drillbook::in_dir(&dir)
        .args(&["run", "b.yaml", "--run-id", "nightly-1"])
        .expect_status(2)
        .expect_stderr(
            "error: run nightly-1 belongs to playbook `alpha`, not `beta`; run `beta` under another --run-id\n",
        )
        .run();
    assert!(!dir.join("b-ran").exists(), "beta ran under alpha's run id");
    Drillbook::in_dir(&dir)
        .args(&["run", "a.yaml", "--run-id", "nightly-1"])
        .expect_status(0)
        .expect_stderr("error: run nightly-1 already ran (succeeded); not running it again\n")
        .run();
    assert_eq!(run_ids(&dir), ["nightly-1"]);
}

/// `--declared-at` in the future is refused (exit 2) by drillbook's own clock, dry run or not;
/// a few seconds ahead is another clock's skew, recorded as the run's start, and no achieved
/// duration is negative.
#[test]
fn a_declared_at_in_the_future_is_refused() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: declared\nobjectives: { rto: 30m }\nsteps:\n  - { id: a, kind: command, run: [touch, ran], clock: stop }\n",
    );
    let dir = test.dir().to_path_buf();
    let declared = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10)).to_string();
    for dry_run in [false, true] {
        let mut args = vec!["run", "p.yaml", "--declared-at", &declared];
        if dry_run {
            args.push("--dry-run");
        }
        let output = Drillbook::in_dir(&dir).args(&args).expect_status(2).run();
        let prefix = format!("error: --declared-at {declared} is ");
        assert!(
            output.stderr.starts_with(&prefix)
                && output
                    .stderr
                    .contains(" in the future (this machine's clock says ")
                && output
                    .stderr
                    .ends_with("); give the time the incident was declared, before this run\n"),
            "{}",
            output.stderr
        );
    }
    assert!(!dir.join("ran").exists());
    assert!(run_ids(&dir).is_empty(), "nothing may start");

    // drillbook keeps time by its own clock: an hour behind, half an hour ago is the future.
    let half_an_hour_ago =
        (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(30)).to_string();
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--declared-at", &half_an_hour_ago])
        .env("DRILLBOOK_CLOCK_OFFSET", "-1h")
        .expect_status(2)
        .run();
    assert!(output.stderr.contains("in the future"), "{}", output.stderr);

    let skewed = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(20)).to_string();
    Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--declared-at", &skewed])
        .expect_status(0)
        .run();
    let run = only_run(&dir);
    let records = journal(&dir, &run);
    let started = &events(&records, "run_started", None)[0];
    let at = |value: &serde_json::Value| {
        value
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .expect("a time")
    };
    assert!(
        at(&started["declared_at"]) <= at(&started["at"]),
        "{started}"
    );
    let output = Drillbook::in_dir(&dir)
        .args(&["report", &run, "--format", "json"])
        .expect_status(0)
        .run();
    let report: serde_json::Value = serde_json::from_str(&output.stdout).expect("json");
    let achieved = report["objectives"]["rto"]["achieved_seconds"]
        .as_f64()
        .expect("achieved");
    assert!(achieved >= 0.0, "{report}");
}

/// The README's first command, with nothing configured: a demo database in a throwaway
/// cluster, backed up into `.drillbook/store`, restored into a second throwaway cluster,
/// smoke-tested; both clusters gone at the end.
#[test]
fn the_quickstart_runs_end_to_end_with_nothing_configured() {
    let test = Drillbook::new();
    let dir = test.dir().to_path_buf();
    let playbook =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/quickstart.yaml");
    let output = Drillbook::in_dir(&dir)
        .args(&["run", &playbook.display().to_string()])
        .deadline(Duration::from_secs(120))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert!(
        output.stdout.contains("RTO         objective 30m"),
        "{}",
        output.stdout
    );
    let run = only_run(&dir);
    let records = journal(&dir, &run);
    let smoke = &events(&records, "step_finished", Some("smoke"))[0];
    assert_eq!(smoke["status"], "succeeded");
    assert_eq!(smoke["outputs"]["passed"], 4, "{smoke}");
    let evidence = smoke["evidence"].to_string();
    assert!(
        evidence.contains("22500 rows, each as in the backup"),
        "{evidence}"
    );
    assert!(
        evidence.contains("1 large objects, 1 in the backup"),
        "{evidence}"
    );
    let backup = &events(&records, "step_finished", Some("backup"))[0];
    let key = backup["outputs"]["key"].as_str().expect("key");
    assert!(dir.join(".drillbook/store").join(key).is_file());
    // Every report an auditor reads says which backup was restored, that its checksum was
    // verified, and the rows compared.
    let sha256 = backup["outputs"]["sha256"].as_str().expect("sha256");
    let verdict = format!("sha256 {sha256} match the manifest");
    for format in ["text", "md", "html"] {
        let report = Drillbook::in_dir(&dir)
            .args(&["report", &run, "--format", format])
            .run();
        assert_eq!(report.status, 0, "{}", report.stderr);
        for needle in [key, verdict.as_str(), "22500 rows, each as in the backup"] {
            assert!(
                report.stdout.contains(needle),
                "{format} report lacks `{needle}`:\n{}",
                report.stdout
            );
        }
        if format == "html" {
            rendered(&dir, &report.stdout);
        }
    }
    assert!(
        dir.join(".drillbook/store")
            .join(format!("{key}.manifest.json"))
            .is_file()
    );
    let clusters = dir.join(".drillbook/runs").join(&run).join("clusters");
    let left: Vec<_> = std::fs::read_dir(&clusters)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "throwaway clusters left behind: {left:?}");
}

#[test]
fn a_second_ctrl_c_aborts_cleanup() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: impatient
steps:
  - { id: long, kind: wait, duration: 60s }
cleanup:
  - { id: slow_tidy, kind: command, run: [sleep, "60"] }
  - { id: after_tidy, kind: command, run: [touch, after_tidy] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let child = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    wait_for(Duration::from_secs(10), "the main step", || {
        common::step_started(&dir, Some("long"))
    });
    child.interrupt();
    wait_for(Duration::from_secs(10), "cleanup to start", || {
        common::step_started(&dir, Some("slow_tidy"))
    });
    child.interrupt();
    assert_eq!(child.wait_within(Duration::from_secs(10)).status, 130);
    let records = journal(&dir, &only_run(&dir));
    assert_eq!(events(&records, "interrupted", None).len(), 2);
    assert_eq!(
        events(&records, "step_finished", Some("slow_tidy"))[0]["status"],
        "cancelled"
    );
    assert_eq!(
        events(&records, "step_skipped", Some("after_tidy"))[0]["reason"],
        "cleanup was aborted (second Ctrl-C)"
    );
    assert!(!dir.join("after_tidy").exists());
}

/// The HTML report, rendered by headless Chromium to a PNG and a PDF (skipped, with a message,
/// where there is no Chromium). Set DRILLBOOK_KEEP_RENDERED=DIR to keep both files.
fn rendered(dir: &std::path::Path, html: &str) {
    let page = dir.join("report.html");
    std::fs::write(&page, html).expect("report.html");
    let Some((png, pdf)) = common::chromium::render(&page) else {
        return;
    };
    let png_bytes = std::fs::read(&png).expect("png");
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank page compresses to almost nothing; a report with text and a chart does not.
    assert!(png_bytes.len() > 40_000, "{} bytes of PNG", png_bytes.len());
    let pdf_bytes = std::fs::read(&pdf).expect("pdf");
    assert!(pdf_bytes.starts_with(b"%PDF-"), "not a PDF");
    assert!(pdf_bytes.len() > 20_000, "{} bytes of PDF", pdf_bytes.len());
    if let Some(keep) = std::env::var_os("DRILLBOOK_KEEP_RENDERED") {
        let keep = std::path::PathBuf::from(keep);
        std::fs::create_dir_all(&keep).expect("keep dir");
        std::fs::copy(&png, keep.join("quickstart-report.png")).expect("keep png");
        std::fs::copy(&pdf, keep.join("quickstart-report.pdf")).expect("keep pdf");
    }
}
