//! Plans: execution order, parallel stages and the critical path of a known graph.

mod common;

use common::Drillbook;

const DIAMOND: &str = r#"version: 1
name: diamond
objectives: { rto: 30m }
steps:
  - { id: assess, kind: manual, instructions: a }
  - { id: restore_db, kind: manual, instructions: b, needs: [assess] }
  - { id: restore_files, kind: manual, instructions: c, needs: [assess] }
  - { id: check_db, kind: manual, instructions: d, needs: [restore_db] }
  - { id: smoke, kind: manual, instructions: e, needs: [check_db, restore_files], clock: stop }
cleanup:
  - { id: tidy, kind: command, run: [rm, -rf, /tmp/x] }
"#;

#[test]
fn stages_and_critical_path() {
    let output = Drillbook::new()
        .playbook("p.yaml", DIAMOND)
        .args(&["plan", "p.yaml"])
        .expect_status(0)
        .run();
    assert_eq!(
        output.stdout,
        "plan: diamond — 5 steps + 1 cleanup; objectives RTO 30m

steps
  stage 1
    assess         manual   manual: a
  stage 2  (2 in parallel)
    restore_db     manual   manual: b  [needs assess]
    restore_files  manual   manual: c  [needs assess]
  stage 3
    check_db       manual   manual: d  [needs restore_db]
  stage 4
    smoke          manual   manual: e  [needs check_db, restore_files; stops the clock]

cleanup (always runs at the end)
  stage 1
    tidy           command  rm -rf /tmp/x

critical path: assess -> restore_db -> check_db -> smoke (4 steps)
"
    );
}

#[test]
fn json_plan_lists_stages() {
    let output = Drillbook::new()
        .playbook("p.yaml", DIAMOND)
        .args(&["plan", "p.yaml", "--format", "json"])
        .expect_status(0)
        .run();
    let plan: serde_json::Value = serde_json::from_str(&output.stdout).expect("json");
    assert_eq!(
        plan["stages"],
        serde_json::json!([
            ["assess"],
            ["restore_db", "restore_files"],
            ["check_db"],
            ["smoke"]
        ])
    );
    assert_eq!(plan["cleanup_stages"], serde_json::json!([["tidy"]]));
    assert_eq!(
        plan["critical_path"],
        serde_json::json!(["assess", "restore_db", "check_db", "smoke"])
    );
    assert_eq!(plan["steps"][1]["needs"], serde_json::json!(["assess"]));
}

#[test]
fn dot_has_every_edge() {
    let output = Drillbook::new()
        .playbook("p.yaml", DIAMOND)
        .args(&["plan", "p.yaml", "--format", "dot"])
        .expect_status(0)
        .run();
    // Critical edges carry a colour: an edge is its two ends, whatever follows.
    for edge in [
        "\"assess\" -> \"restore_db\"",
        "\"assess\" -> \"restore_files\"",
        "\"restore_db\" -> \"check_db\"",
        "\"check_db\" -> \"smoke\"",
        "\"restore_files\" -> \"smoke\"",
    ] {
        assert!(
            output.stdout.contains(edge),
            "missing {edge} in\n{}",
            output.stdout
        );
    }
}

#[test]
fn validate_several_files_fails_if_one_is_invalid() {
    let output = Drillbook::new()
        .playbook("good.yaml", DIAMOND)
        .playbook("bad.yaml", "version: 1\nname: b\nsteps: []\n")
        .args(&["validate", "good.yaml", "bad.yaml"])
        .expect_status(2)
        .run();
    assert_eq!(output.stdout, "good.yaml: valid (6 steps)\n");
    assert!(output.stderr.contains("bad.yaml:3:1"));
}

#[test]
fn pictures_put_cleanup_after_the_main_flow_and_mark_the_critical_path() {
    let test = Drillbook::new().playbook("p.yaml", DIAMOND);
    let dot = Drillbook::in_dir(test.dir())
        .args(&["plan", "p.yaml", "--format", "dot"])
        .expect_status(0)
        .run()
        .stdout;
    // Cleanup in a box of its own, after the main flow's last step.
    let cluster = dot
        .split("subgraph cluster_cleanup {")
        .nth(1)
        .and_then(|rest| rest.split("  }").next())
        .unwrap_or_else(|| panic!("no cleanup cluster in\n{dot}"));
    assert!(cluster.contains("\"tidy\" ["), "{dot}");
    assert!(!cluster.contains("\"smoke\" ["), "{dot}");
    assert!(
        dot.contains("\"smoke\" -> \"tidy\" [style=dotted"),
        "cleanup follows the last main step:\n{dot}"
    );
    assert!(!dot.contains("\"check_db\" -> \"tidy\""), "{dot}");
    // The critical path assess -> restore_db -> check_db -> smoke is red; the other edges not.
    for edge in [
        "\"assess\" -> \"restore_db\" [color=",
        "\"restore_db\" -> \"check_db\" [color=",
        "\"check_db\" -> \"smoke\" [color=",
    ] {
        assert!(dot.contains(edge), "{edge} in\n{dot}");
    }
    assert!(dot.contains("\"assess\" -> \"restore_files\";"), "{dot}");
    assert!(dot.contains("subgraph cluster_legend"), "{dot}");

    let mermaid = Drillbook::in_dir(test.dir())
        .args(&["plan", "p.yaml", "--format", "mermaid"])
        .expect_status(0)
        .run()
        .stdout;
    assert!(
        mermaid.contains("subgraph cleanup [\"cleanup (always runs at the end)\"]"),
        "{mermaid}"
    );
    // smoke is the fifth step (s4), tidy the sixth (s5).
    assert!(mermaid.contains("s4 -.->|then| s5"), "{mermaid}");
    assert!(
        mermaid.contains("class s0,s1,s3,s4,legend_critical critical"),
        "{mermaid}"
    );
}

#[test]
fn the_text_plan_names_the_variable_a_repoint_sets() {
    let playbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks/quarterly-failover.yaml")
        .display()
        .to_string();
    let plan = Drillbook::new()
        .args(&["plan", &playbook])
        .expect_status(0)
        .run()
        .stdout;
    for id in ["switch_storage", "storage_back"] {
        let line = plan
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} in\n{plan}"));
        assert!(line.contains("set STORAGE_URL in"), "{line}");
        assert!(!line.contains("DATABASE_URL"), "{line}");
    }
}

#[test]
fn the_text_plan_renders_what_it_can_and_never_cuts_instructions() {
    let output = Drillbook::new()
        .playbook(
            "p.yaml",
            r#"version: 1
name: templates
vars: { store: "s3://backups/prod" }
secrets: [RESTORE_URL]
steps:
  - { id: assess, kind: assess, store: "{{ vars.store }}" }
  - id: restore
    kind: restore
    backup: "{{ steps.assess.outputs.backup }}"
    store: "{{ vars.store }}"
    target: "{{ secrets.RESTORE_URL }}"
    needs: [assess]
  - id: call
    kind: manual
    needs: [restore]
    instructions: |
      Call the DBA on-call, and when they answer,
      confirm the standby is healthy.
"#,
        )
        .args(&["plan", "p.yaml"])
        .expect_status(0)
        .run();
    let text = output.stdout;
    // A variable's default is known; what a run learns is a named placeholder.
    assert!(text.contains("s3://backups/prod"), "{text}");
    assert!(text.contains("‹steps.assess.outputs.backup›"), "{text}");
    assert!(text.contains("‹secrets.RESTORE_URL›"), "{text}");
    assert!(!text.contains("{{"), "{text}");
    // Both lines of the instructions, whole.
    assert!(
        text.contains("| Call the DBA on-call, and when they answer,\n"),
        "{text}"
    );
    assert!(
        text.contains("| confirm the standby is healthy.\n"),
        "{text}"
    );
}
