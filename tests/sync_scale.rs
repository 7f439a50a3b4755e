//! `sync` at bucket scale (issue 21), local directories through the real binary: a mirror of
//! 100,000 objects killed mid-way resumes and copies only what its checksum report does not
//! vouch for; 10 changed, 5 deleted and 5 added among 100,000 are exactly what is copied and
//! deleted, saved as one small segment of the report; a report in the first format is read
//! and converted once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::drill::{json_report, run_of, step};
use common::report::{head, put_at as put, report_bytes, report_in, tree};
use common::{Drillbook, minutes};

const OBJECTS: usize = 100_000;

const PLAYBOOK: &str = "version: 1
name: mirror
vars:
  source: \"\"
  destination: \"\"
steps:
  - id: mirror
    kind: sync
    source: \"{{ vars.source }}\"
    destination: \"{{ vars.destination }}\"
    delete: true
";

fn an_hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

/// `count` small objects, 1,000 a directory, each its own bytes.
fn objects(root: &Path, count: usize) {
    let when = an_hour_ago();
    for i in 0..count {
        put(
            root,
            &format!("d{:03}/object-{i:06}.bin", i / 1000),
            format!("object {i}\n").as_bytes(),
            when,
        );
    }
}

struct Lab {
    _base: tempfile::TempDir,
    dir: PathBuf,
    source: PathBuf,
    mirror: PathBuf,
}

fn lab() -> Lab {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("state");
    let source = base.path().join("source");
    let mirror = base.path().join("mirror");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::create_dir_all(&source).expect("mkdir");
    Lab {
        _base: base,
        dir,
        source,
        mirror,
    }
}

impl Lab {
    fn args(&self) -> Vec<String> {
        vec![
            "run".into(),
            "mirror.yaml".into(),
            "--var".into(),
            format!("source={}", self.source.display()),
            "--var".into(),
            format!("destination={}", self.mirror.display()),
        ]
    }

    /// Runs the mirror to its end in a state directory of its own; returns the step's record.
    fn sync(&self) -> serde_json::Value {
        let dir = self.fresh();
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = Drillbook::in_dir(&dir)
            .args(&args)
            .deadline(minutes(8))
            .run();
        assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
        last(&dir)
    }

    /// A new state directory holding the playbook.
    fn fresh(&self) -> PathBuf {
        let count = std::fs::read_dir(&self.dir).map_or(0, |entries| entries.count());
        let dir = self.dir.join(format!("run-{count}"));
        std::fs::create_dir_all(&dir).expect("run directory");
        std::fs::write(dir.join("mirror.yaml"), PLAYBOOK).expect("playbook");
        dir
    }
}

fn last(dir: &Path) -> serde_json::Value {
    let report = json_report(dir, &run_of(dir, "mirror"));
    step(&report, "mirror").clone()
}

fn output(step: &serde_json::Value, name: &str) -> u64 {
    step["outputs"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("output {name}: {step}"))
}

#[test]
fn a_mirror_of_100000_objects_killed_midway_resumes_and_copies_only_the_rest() {
    let lab = lab();
    objects(&lab.source, OBJECTS);
    let args = lab.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = lab.fresh();
    let mut child = Drillbook::in_dir(&dir).args(&args).spawn();
    // Mid-way: after a few checkpoints.
    let segments = |mirror: &Path| -> usize {
        let Ok(text) = std::fs::read(mirror.join(common::report::HEAD)) else {
            return 0;
        };
        let head: serde_json::Value = serde_json::from_slice(&text).expect("head");
        let generation = head["generation"].as_str().expect("generation");
        std::fs::read_dir(mirror.join(format!(".drillbook/checksums/{generation}.d")))
            .map_or(0, |entries| entries.count())
    };
    common::wait_for(Duration::from_secs(60), "three checkpoints", || {
        segments(&lab.mirror) >= 3
    });
    assert!(
        child.try_wait().is_none(),
        "the sync finished before it could be killed"
    );
    assert_eq!(child.kill().code(), None, "killed by a signal");

    let recorded = report_in(&lab.mirror);
    let copied_before = tree(&lab.mirror);
    assert!(
        !recorded.is_empty() && recorded.len() < OBJECTS,
        "{} recorded",
        recorded.len()
    );
    for (key, entry) in &recorded {
        assert_eq!(copied_before.get(key), Some(entry), "{key}");
    }

    let run = run_of(&dir, "mirror");
    let out = Drillbook::in_dir(&dir)
        .args(&["resume", &run])
        .deadline(minutes(8))
        .run();
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let resumed = last(&dir);
    assert_eq!(resumed["status"], "succeeded", "{resumed:#}");
    assert_eq!(
        output(&resumed, "copied"),
        (OBJECTS - recorded.len()) as u64,
        "exactly what the report did not vouch for"
    );
    assert_eq!(output(&resumed, "unchanged"), recorded.len() as u64);
    let source = tree(&lab.source);
    assert_eq!(tree(&lab.mirror), source);
    assert_eq!(report_in(&lab.mirror), source);
    eprintln!(
        "killed after {} copies ({} in the report)",
        copied_before.len(),
        recorded.len()
    );
}

#[test]
fn ten_changed_five_deleted_five_added_among_100000_are_exactly_what_is_done() {
    let lab = lab();
    objects(&lab.source, OBJECTS);
    let first = lab.sync();
    assert_eq!(output(&first, "copied"), OBJECTS as u64);
    let generation = head(&lab.mirror)["generation"].clone();
    let bytes_before = report_bytes(&lab.mirror);

    let later = an_hour_ago() + Duration::from_secs(60);
    let mut changed = Vec::new();
    for i in (0..10).map(|n| n * 9_973) {
        let key = format!("d{:03}/object-{i:06}.bin", i / 1000);
        put(&lab.source, &key, format!("OBJECT {i}\n").as_bytes(), later);
        changed.push(key);
    }
    let mut deleted = Vec::new();
    for i in (0..5).map(|n| 1 + n * 19_997) {
        let key = format!("d{:03}/object-{i:06}.bin", i / 1000);
        std::fs::remove_file(lab.source.join(&key)).expect("delete");
        deleted.push(key);
    }
    for n in 0..5 {
        put(
            &lab.source,
            &format!("new/added-{n}.bin"),
            b"added",
            an_hour_ago(),
        );
    }

    let second = lab.sync();
    assert_eq!(output(&second, "copied"), 15, "{second:#}");
    assert_eq!(output(&second, "deleted"), 5, "{second:#}");
    assert_eq!(output(&second, "unchanged"), (OBJECTS - 15) as u64);
    let evidence = second["evidence"].to_string();
    for key in changed.iter().chain(&deleted) {
        assert!(evidence.contains(key.as_str()), "{key} in {evidence}");
    }
    let source = tree(&lab.source);
    assert_eq!(tree(&lab.mirror), source);
    assert_eq!(report_in(&lab.mirror), source);
    // Saved as what changed, not the report again: the same generation, a segment more.
    assert_eq!(head(&lab.mirror)["generation"], generation);
    let grown = report_bytes(&lab.mirror) - bytes_before;
    assert!(grown < 10_000, "the report grew by {grown} bytes");
}

#[test]
fn a_report_in_the_first_format_is_read_and_converted_once() {
    let lab = lab();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    put(&lab.source, "a/alpha.txt", b"alpha\n", when);
    put(&lab.source, "b/beta.txt", b"beta\n", when);
    put(&lab.source, "c/gamma.txt", b"gamma\n", when);
    let first = lab.sync();
    assert_eq!(output(&first, "copied"), 3);
    let source_url = head(&lab.mirror)["source"]
        .as_str()
        .expect("source")
        .to_owned();

    // The report as the previous format wrote it: alpha and beta, not gamma.
    std::fs::remove_dir_all(lab.mirror.join(".drillbook")).expect("remove the report");
    std::fs::create_dir_all(lab.mirror.join(".drillbook")).expect("mkdir");
    let fixture = include_str!("fixtures/checksums-v1.json").replace("@SOURCE@", &source_url);
    std::fs::write(lab.mirror.join(common::report::HEAD), fixture).expect("write fixture");

    let second = lab.sync();
    assert_eq!(output(&second, "unchanged"), 2, "{second:#}");
    assert_eq!(output(&second, "copied"), 1, "{second:#}");
    assert!(
        second["evidence"]
            .to_string()
            .contains("drillbook's first format"),
        "{second:#}"
    );
    assert_eq!(head(&lab.mirror)["report_version"], 2);
    assert_eq!(report_in(&lab.mirror), tree(&lab.source));

    // Converted once: the next sync reads the new format and says nothing of the old one.
    let third = lab.sync();
    assert_eq!(output(&third, "unchanged"), 3);
    assert!(!third["evidence"].to_string().contains("first format"));
}
