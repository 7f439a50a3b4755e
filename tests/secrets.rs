//! A canary secret used in a command's arguments, environment and output, and in a failing
//! step's error, must appear nowhere: not in the state directory, not in anything printed,
//! not in any report.

mod common;

use std::path::Path;

use common::{Drillbook, drillbook, only_run};

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
    run: [sh, -c, "echo \"arg=$0 env=$TOKEN url=$1\"; echo \"$0\" >&2", "{{ secrets.CANARY }}", "{{ vars.url }}"]
    env: { TOKEN: "{{ secrets.CANARY }}" }
  - id: fails
    kind: command
    run: [sh, -c, "echo \"failing with $0\" >&2; exit 1", "{{ secrets.CANARY }}"]
  - id: missing
    kind: command
    run: ["/nonexistent/{{ secrets.CANARY }}"]
    needs: []
    continue_on_failure: true
"#,
        )
        .file("secrets.env", format!("CANARY={CANARY}\n").as_bytes());
    let dir = test.dir().to_path_buf();
    let output = drillbook(
        &dir,
        &["run", "p.yaml", "--secrets-file", "secrets.env", "-v"],
    );
    assert_eq!(output.status, 1, "{}", output.stderr);
    let run = only_run(&dir);
    let mut printed = vec![output.stdout, output.stderr];
    for format in ["text", "md", "json", "junit", "html"] {
        let report = drillbook(&dir, &["report", &run, "--format", format]);
        assert_eq!(report.status, 0);
        printed.push(report.stdout);
    }
    printed.push(drillbook(&dir, &["status", &run]).stdout);
    printed.push(drillbook(&dir, &["runs"]).stdout);

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
