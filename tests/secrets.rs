//! A canary secret used in a command's environment and output, and in a failing step's error,
//! must appear nowhere: not in the state directory, not in anything printed, not in any
//! report. (A command's arguments cannot hold it: validation refuses a secret there.)

mod common;

use std::path::Path;

use common::{Drillbook, only_run};

const CANARY: &str = "canary-7Hq2-zP9x-secret";

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_canary_appears_nowhere() {
    let test = Drillbook::new()
        .playbook(
            "p.yaml",
            r#"version: 1
name: canary
secrets: [CANARY]
vars:
  url: "postgres://app:{{ secrets.CANARY }}@db.internal/app"
steps:
  - id: uses
    kind: command
    run: [sh, -c, "echo \"arg=$ARG env=$TOKEN url=$URL\"; echo \"$ARG\" >&2"]
    env: { TOKEN: "{{ secrets.CANARY }}", ARG: "{{ secrets.CANARY }}", URL: "{{ vars.url }}" }
  - id: fails
    kind: command
    run: [sh, -c, "echo \"failing with $SECRET\" >&2; exit 1"]
    env: { SECRET: "{{ secrets.CANARY }}" }
  - id: missing
    kind: command
    run: [/nonexistent/program]
    user: "{{ secrets.CANARY }}"
    needs: []
    continue_on_failure: true
"#,
        )
        .file("secrets.env", format!("CANARY={CANARY}\n").as_bytes());
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--secrets-file", "secrets.env", "-v"])
        .run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    let run = only_run(&dir);
    let mut printed = vec![output.stdout, output.stderr];
    for format in ["text", "md", "json", "junit", "html"] {
        let report = Drillbook::in_dir(&dir)
            .args(&["report", &run, "--format", format])
            .run();
        assert_eq!(report.status, 0);
        printed.push(report.stdout);
    }
    printed.push(Drillbook::in_dir(&dir).args(&["status", &run]).run().stdout);
    printed.push(Drillbook::in_dir(&dir).args(&["runs"]).run().stdout);

    // The secret was really used: the command saw it and its output was captured (masked).
    let captured = std::fs::read_to_string(
        dir.join(".drillbook/runs")
            .join(&run)
            .join("output/uses.1.stdout"),
    )
    .expect("captured");
    assert_eq!(
        captured,
        "arg=*** env=*** url=postgres://app:***@db.internal/app\n"
    );

    let mut files = Vec::new();
    files_under(&dir.join(".drillbook"), &mut files);
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "the canary is in {}",
            file.display()
        );
    }
    for (i, text) in printed.iter().enumerate() {
        assert!(
            !text.contains(CANARY),
            "the canary was printed (output {i}):\n{text}"
        );
    }
    let log = std::fs::read_to_string(dir.join(".drillbook/runs").join(&run).join("drillbook.log"))
        .expect("log");
    assert!(log.contains("step_finished"), "the log is empty:\n{log}");
}

/// The journal keeps variables masked. A variable holding a secret's value comes back whole
/// on resume when the playbook's default gives it; one given with `--var` must be given again,
/// and the resume says so instead of running with `***` in it. (The secret is long enough to
/// be masked in free text, which a literal `--var` value is: see `SHORTEST_MASKED`.)
#[test]
fn a_resumed_run_gets_its_variables_back_unmasked() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: vars-on-resume
secrets: [TOKEN]
vars:
  from_default: "out-{{ secrets.TOKEN }}-default.txt"
  given: "unset"
steps:
  - id: gate
    kind: approval
    prompt: "go?"
  - id: write
    kind: command
    run: [sh, -c, 'echo "$GIVEN" > "$FILE"']
    env: { FILE: "{{ vars.from_default }}", GIVEN: "{{ vars.given }}" }
"#,
    );
    let dir = test.dir();
    let with_token = || Drillbook::in_dir(dir).env("TOKEN", "tok4242");
    let output = with_token()
        .args(&["run", "p.yaml", "--var", "given=x-tok4242-y"])
        .run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    let id = only_run(dir);
    assert_eq!(
        Drillbook::in_dir(dir)
            .args(&["approve", &id, "gate"])
            .run()
            .status,
        0
    );

    let refused = with_token().args(&["resume", &id]).run();
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("variable `given`") && refused.stderr.contains("--var given=VALUE"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("tok4242"), "{}", refused.stderr);

    let output = with_token()
        .args(&["resume", &id, "--var", "given=x-tok4242-y"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let written = std::fs::read_to_string(dir.join("out-tok4242-default.txt"))
        .expect("the default var came back whole, secret included");
    assert_eq!(written.trim(), "x-tok4242-y");
}
