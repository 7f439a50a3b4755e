//! The shipped playbooks validate, plan, and carry the schema comment editors need.

mod common;

use std::path::PathBuf;

use common::Drillbook;

fn playbooks() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("playbooks/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_procedure_is_shipped() {
    let names: Vec<String> = playbooks()
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
        .collect();
    assert_eq!(
        names,
        [
            "base-backup.yaml",
            "database-restore.yaml",
            "monthly-restore-smoke.yaml",
            "nightly-backup.yaml",
            "pitr-restore-drill.yaml",
            "post-release-verify.yaml",
            "quarterly-failover.yaml",
            "quickstart.yaml",
            "storage-mirror.yaml",
            "storage-restore.yaml",
            "weekly-verify.yaml",
        ]
    );
}

#[test]
fn every_playbook_validates() {
    let files = playbooks();
    let mut args = vec!["validate".to_owned()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = Drillbook::new().args(&args).expect_status(0).run();
    assert_eq!(
        output.stdout.lines().count(),
        files.len(),
        "{}",
        output.stdout
    );
    assert!(output.stderr.is_empty(), "{}", output.stderr);
}

#[test]
fn every_playbook_names_the_schema_and_explains_itself() {
    for path in playbooks() {
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("# yaml-language-server: $schema=../schemas/playbook.schema.json"),
            "{}",
            path.display()
        );
        let header = lines.take_while(|l| l.starts_with('#')).count();
        assert!(
            header >= 3,
            "{}: a comment header says what it does, when and what it needs",
            path.display()
        );
    }
}

#[test]
fn plans_render_in_every_format() {
    for path in playbooks() {
        let file = path.display().to_string();
        let text = Drillbook::new()
            .args(&["plan", &file])
            .expect_status(0)
            .run()
            .stdout;
        assert!(text.contains("critical path: "), "{text}");
        let dot = Drillbook::new()
            .args(&["plan", &file, "--format", "dot"])
            .expect_status(0)
            .run()
            .stdout;
        assert!(
            dot.starts_with("digraph ") && dot.trim_end().ends_with('}'),
            "{dot}"
        );
        let mermaid = Drillbook::new()
            .args(&["plan", &file, "--format", "mermaid"])
            .expect_status(0)
            .run()
            .stdout;
        assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
        let json = Drillbook::new()
            .args(&["plan", &file, "--format", "json"])
            .expect_status(0)
            .run()
            .stdout;
        let value: serde_json::Value = serde_json::from_str(&json).expect("plan JSON parses");
        let steps = value["steps"].as_array().expect("steps");
        let staged: usize = value["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| s.as_array().map_or(0, Vec::len))
            .sum::<usize>()
            + value["cleanup_stages"]
                .as_array()
                .expect("cleanup")
                .iter()
                .map(|s| s.as_array().map_or(0, Vec::len))
                .sum::<usize>();
        assert_eq!(staged, steps.len(), "every step is in exactly one stage");
    }
}

/// `--dry-run` renders every step of every shipped playbook: each template resolves, step
/// outputs included (a status page's `response.id` too), with a value for each secret.
#[test]
fn every_playbook_dry_runs_with_every_template_resolved() {
    for path in playbooks() {
        let (_, playbook) = drillbook::validate::load(&path).expect("valid");
        let file = path.display().to_string();
        let mut run = Drillbook::new().args(&["run", &file, "--dry-run"]);
        for secret in &playbook.secrets {
            // Distinct hosts: a drill refuses drill targets that are live ones; and values of
            // the kind each names, or the drill cannot tell whether a write is live.
            run = run.env(secret, common::drill::secret_value(secret));
        }
        let output = run.run();
        assert_eq!(
            output.status, 0,
            "{file}:\n{}\n{}",
            output.stdout, output.stderr
        );
        assert!(
            output.stdout.contains("nothing was touched"),
            "{}",
            output.stdout
        );
    }
}

/// Whether a template reads a target: `target.NAME` inside `{{ … }}` (not `vars.target.x`).
fn reads_a_target(template: &str) -> bool {
    template.split("{{").skip(1).any(|rest| {
        let expression = rest.split("}}").next().unwrap_or(rest);
        expression.match_indices("target.").any(|(at, _)| {
            expression[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'))
        })
    })
}

#[test]
fn reading_a_target_means_target_dot_in_a_template() {
    assert!(reads_a_target("{{ target.store }}"));
    assert!(reads_a_target("{{target.store}}/nightly"));
    assert!(reads_a_target("{{ vars.x ~ (target.mirror) }}"));
    assert!(!reads_a_target("{{ vars.store }}"));
    assert!(!reads_a_target("{{ secrets.REDIS_URL }}"));
    assert!(!reads_a_target("{{ vars.target.x }}"));
    assert!(!reads_a_target("{{ vars.retarget.x }}"));
    assert!(!reads_a_target("target.store"));
    assert!(!reads_a_target("s3://bucket/{{ vars.x }}/target.y"));
}

/// A drill can only stay off what is live when the playbook says what acts on it: in every
/// shipped playbook, every parameter a step that a drill runs writes through (restore's
/// `target`, backup's `store`, sync's `destination`, promote's `standby`/`env_file`/`endpoint`,
/// flush's `redis`, notify's `webhook`/`url`, a command's `touches`) reads a `target.`, so that
/// a drill writes to `targets.drill` and only a live run to `targets.live`. (A restore into
/// `ephemeral`, a cluster of the run's own, writes nothing that lives on.)
#[test]
fn every_write_of_a_shipped_playbook_reads_a_target() {
    let mut loose = Vec::new();
    let mut writes = 0;
    for path in playbooks() {
        let (_, playbook) = drillbook::validate::load(&path).expect("valid");
        for step in playbook.steps.iter().filter(|step| !step.live_only) {
            for (param, value) in step.params.write_params() {
                writes += 1;
                if !reads_a_target(&value) {
                    loose.push(format!(
                        "{}: step `{}` writes `{param}` = {value:?}",
                        playbook.name, step.id
                    ));
                }
            }
        }
    }
    assert!(
        loose.is_empty(),
        "writes that do not read a target:\n{}",
        loose.join("\n")
    );
    // Not vacuous: the shipped playbooks write through some thirty parameters.
    assert!(writes >= 20, "{writes} writes");
}
