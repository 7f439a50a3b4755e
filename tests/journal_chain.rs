//! The journal's hash chain, end to end: a real run's journal, altered four ways on disk, and
//! what `drillbook verify` and the reports say of each.

mod common;

use std::path::{Path, PathBuf};

use common::{Drillbook, only_run};

const PLAYBOOK: &str = r#"version: 1
name: chained
steps:
  - { id: one, kind: command, run: ["true"] }
  - { id: two, kind: command, run: ["true"], needs: [one] }
  - { id: three, kind: command, run: ["true"], needs: [two] }
"#;

fn journal_path(dir: &Path) -> PathBuf {
    common::walk(dir)
        .into_iter()
        .find(|path| path.ends_with("journal.jsonl"))
        .map(|path| dir.join(path))
        .expect("a journal")
}

fn verify(dir: &Path) -> (i32, String) {
    let output = Drillbook::in_dir(dir).args(&["verify", "latest"]).run();
    (output.status, output.stdout + &output.stderr)
}

#[test]
fn every_alteration_of_a_journal_is_named_by_verify_and_the_reports() {
    let test = Drillbook::new().playbook("p.yaml", PLAYBOOK);
    let dir = test.dir();
    Drillbook::in_dir(dir)
        .args(&["run", "p.yaml"])
        .expect_status(0)
        .run();
    let (status, said) = verify(dir);
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("hash chain intact"), "{said}");
    let head = said
        .lines()
        .find_map(|line| line.strip_prefix("head sha256 "))
        .expect("the head")
        .to_string();
    assert_eq!(head.len(), 64, "{said}");

    let path = journal_path(dir);
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() > 6);
    let with = |lines: Vec<String>| std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();

    // The first step's end: what it says, where it is.
    let i = lines
        .iter()
        .position(|line| line.contains("\"step_finished\""))
        .expect("a step finished");
    let (line, seq) = (i + 1, i);

    // Edited: the step is said to have failed.
    let mut edited = owned();
    edited[i] = edited[i].replace("\"succeeded\"", "\"failed\"");
    assert_ne!(edited[i], lines[i]);
    with(edited);
    let (status, said) = verify(dir);
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!("line {line} (seq {seq}) was edited")),
        "{said}"
    );

    // Removed.
    let mut removed = owned();
    removed.remove(i);
    with(removed);
    let (status, said) = verify(dir);
    assert_eq!(status, 1, "{said}");
    assert!(said.contains(&format!("seq {seq} was removed")), "{said}");

    // Reordered.
    let mut reordered = owned();
    reordered.swap(i, i + 1);
    with(reordered);
    let (status, said) = verify(dir);
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!("seq {seq} was moved to line {}", line + 1)),
        "{said}"
    );

    // Inserted: a copy of the record, as if the step had finished twice.
    let mut inserted = owned();
    inserted.insert(i + 1, lines[i].to_string());
    with(inserted);
    let (status, said) = verify(dir);
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "lines {line} and {} are both seq {seq}: one of them was inserted",
            line + 1
        )),
        "{said}"
    );

    // Every report says so too, beside the head.
    for format in ["text", "md", "html", "json"] {
        let report = Drillbook::in_dir(dir)
            .args(&["report", &only_run(dir), "--format", format])
            .run();
        assert!(
            report.stdout.contains("one of them was inserted"),
            "{format}: {}",
            report.stdout
        );
        if format != "json" {
            assert!(report.stdout.contains("HASH CHAIN BROKEN"), "{format}");
        }
    }

    // Put back, it verifies again with the same head.
    std::fs::write(&path, &original).unwrap();
    let (status, said) = verify(dir);
    assert_eq!(status, 0, "{said}");
    assert!(said.contains(&head), "{said}");
}
