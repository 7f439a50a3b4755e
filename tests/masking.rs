//! Secrets and what templates make of them never leave: a canary passed through filters
//! (`upper`, `reverse`, `b64encode`, `urlencode`, `replace`, slicing, `~`) appears in no file of
//! the state directory, no report, nothing printed and not the log. And a secret whose value is
//! short or common (`1`, `0`, `true`, `drill`, `x`) cannot corrupt a run: it is shown as `***`
//! where a template puts it, typed fields are never masked, and the run says it is too short
//! to mask in free text.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::{Drillbook, events, journal, only_run};

const CANARY: &str = "canary-4Rt8-wQ2m-leak";

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every form the playbook below derives from the canary.
fn derived_forms() -> Vec<(&'static str, String)> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    vec![
        ("the secret", CANARY.to_string()),
        ("upper", CANARY.to_uppercase()),
        ("reverse", CANARY.chars().rev().collect()),
        // Padding says no more than the length does.
        ("b64encode", b64.trim_end_matches('=').to_string()),
        ("urlencode", format!("{CANARY}%20x%2Fy")),
        ("replace", CANARY.replace('-', "+")),
        ("slice", CANARY[3..15].to_string()),
        ("~", format!("pre{CANARY}post")),
    ]
}

#[test]
fn a_secret_through_any_filter_appears_nowhere() {
    let test = Drillbook::new()
        .playbook(
            "p.yaml",
            r#"version: 1
name: derived
secrets: [CANARY]
vars:
  shouted: "{{ secrets.CANARY | upper }}"
steps:
  - id: derive
    kind: command
    run: [sh, -c, 'for v in "$UP" "$REV" "$B64" "$URL" "$REP" "$SLICE" "$CAT" "$VAR"; do echo "derived: $v"; done; echo "$REV" >&2']
    env:
      UP: "{{ secrets.CANARY | upper }}"
      REV: "{{ secrets.CANARY | reverse }}"
      B64: "{{ secrets.CANARY | b64encode }}"
      URL: "{{ (secrets.CANARY ~ ' x/y') | urlencode }}"
      REP: "{{ secrets.CANARY | replace('-', '+') }}"
      SLICE: "{{ secrets.CANARY[3:15] }}"
      CAT: "{{ 'pre' ~ secrets.CANARY ~ 'post' }}"
      VAR: "{{ vars.shouted }}"
  - id: ask
    kind: approval
    prompt: "Proceed with {{ secrets.CANARY | reverse }} and {{ vars.shouted }}?"
  - id: fails
    kind: command
    run: [sh, -c, 'echo "failing with $X and $Y" >&2; exit 1']
    env:
      X: "{{ secrets.CANARY | b64encode }}"
      Y: "{{ secrets.CANARY[3:15] }}"
"#,
        )
        .file("secrets.env", format!("CANARY={CANARY}\n").as_bytes());
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir)
        .args(&[
            "run",
            "p.yaml",
            "--secrets-file",
            "secrets.env",
            "--approve-all",
            "-v",
        ])
        .run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    let run = only_run(&dir);

    // The forms were really made and used: the program printed them (masked when captured).
    let captured = std::fs::read_to_string(
        dir.join(".drillbook/runs")
            .join(&run)
            .join("output/derive.1.stdout"),
    )
    .expect("captured");
    assert_eq!(captured.matches("derived: ").count(), 8, "{captured}");
    assert_eq!(captured.matches("***").count(), 8, "{captured}");

    let mut printed = vec![
        ("run's stdout".to_string(), output.stdout),
        ("run's stderr".to_string(), output.stderr),
    ];
    for format in ["text", "md", "json", "junit", "html"] {
        let report = Drillbook::in_dir(&dir)
            .args(&["report", &run, "--format", format])
            .run();
        printed.push((format!("{format} report"), report.stdout));
    }
    printed.push((
        "status".into(),
        Drillbook::in_dir(&dir).args(&["status", &run]).run().stdout,
    ));
    let mut files = Vec::new();
    files_under(&dir.join(".drillbook"), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("drillbook.log")),
        "{files:?}"
    );
    for file in &files {
        printed.push((
            file.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(file).expect("read")).into_owned(),
        ));
    }
    for (name, form) in derived_forms() {
        for (place, text) in &printed {
            assert!(
                !text.contains(&form),
                "the canary ({name}: {form}) is in {place}:\n{text}"
            );
        }
    }
    // Where a template put the secret, the journal shows `***`.
    let records = journal(&dir, &run);
    let started = events(&records, "step_started", Some("derive"));
    assert_eq!(started[0]["params"]["env"]["UP"], "***");
    assert_eq!(started[0]["params"]["env"]["CAT"], "pre***post");
}

#[test]
fn short_and_common_secret_values_run_to_the_end() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: short-secrets
secrets: [ONE, ZERO, YES, WORD, LETTER]
steps:
  - id: use
    kind: command
    run: [sh, -c, 'echo "values $ONE $ZERO $YES $WORD $LETTER"; echo "1 row, 0 errors, true, drill x"']
    env:
      ONE: "{{ secrets.ONE }}"
      ZERO: "{{ secrets.ZERO }}"
      YES: "{{ secrets.YES }}"
      WORD: "{{ secrets.WORD }}"
      LETTER: "{{ secrets.LETTER }}"
  - id: ask
    kind: approval
    prompt: "Go with {{ secrets.WORD }}?"
  - { id: wait, kind: wait, duration: 0s }
"#,
    );
    let dir = test.dir().to_path_buf();
    let with_secrets = || {
        Drillbook::in_dir(&dir).envs([
            ("ONE", "1"),
            ("ZERO", "0"),
            ("YES", "true"),
            ("WORD", "drill"),
            ("LETTER", "x"),
        ])
    };
    let output = with_secrets()
        .args(&["run", "p.yaml", "--run-id", "r1"])
        .run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    for name in ["ONE", "ZERO", "YES", "WORD", "LETTER"] {
        assert!(
            output.stderr.contains(&format!(
                "warning: secret `{name}` is shorter than 6 characters"
            )),
            "{}",
            output.stderr
        );
    }
    let records = journal(&dir, "r1");
    let asked = events(&records, "approval_requested", Some("ask"));
    assert_eq!(asked[0]["prompt"], "Go with ***?");
    let approved = Drillbook::in_dir(&dir)
        .args(&["approve", "r1", "ask", "--as", "alice"])
        .run();
    assert_eq!(approved.status, 0, "{}", approved.stderr);
    let resumed = with_secrets().args(&["resume", "r1"]).run();
    assert_eq!(resumed.status, 0, "{}", resumed.stderr);

    // Typed fields read back: the mode, the pid, the run id, the exit code.
    let records = journal(&dir, "r1");
    let started = &records[0];
    assert_eq!(started["mode"], "drill");
    assert_eq!(started["run_id"], "r1");
    assert!(started["pid"].as_u64().is_some(), "{started}");
    assert_eq!(records.last().expect("records")["exit_code"], 0);
    // Where the templates put them: `***`.
    let params = &events(&records, "step_started", Some("use"))[0]["params"]["env"];
    for name in ["ONE", "ZERO", "YES", "WORD", "LETTER"] {
        assert_eq!(params[name], "***", "{params}");
    }
    // Free text keeps its words and numbers.
    let captured =
        std::fs::read_to_string(dir.join(".drillbook/runs/r1/output/use.1.stdout")).expect("out");
    assert!(
        captured.contains("1 row, 0 errors, true, drill x"),
        "{captured}"
    );
    // Everything that reads the journal still can.
    let runs = Drillbook::in_dir(&dir).args(&["runs"]).run();
    assert!(runs.stdout.contains("succeeded"), "{}", runs.stdout);
    let report = Drillbook::in_dir(&dir)
        .args(&["report", "r1", "--format", "json"])
        .run();
    let report: serde_json::Value = serde_json::from_str(&report.stdout).expect("json");
    assert_eq!(report["mode"], "drill");
    assert_eq!(report["outcome"], "succeeded");
    let again = with_secrets().args(&["resume", "r1"]).run();
    assert!(
        again.stderr.contains("already finished (succeeded)"),
        "{}",
        again.stderr
    );
}
