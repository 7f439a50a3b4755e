//! Every shipped playbook, run as a drill whose targets are the live ones — the live secrets
//! set to the drill's values, or left unset with the drill's pointing at `targets.identity` —
//! refuses before any step runs. The inputs are derived from each playbook's own `targets`, so
//! a target added later is covered, and a shape this test does not know fails it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use drillbook::model::Playbook;

use super::common::Drillbook;
use super::common::drill::secret_value;
use super::{Cases, REFUSED, refused_at_start};

fn shipped_playbooks() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("playbooks/")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `{{ vars.NAME }}` or `{{ secrets.NAME }}` and nothing else: (`vars` or `secrets`, NAME).
fn reads_one(template: &str) -> Option<(&str, &str)> {
    let inner = template
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim();
    let (scope, name) = inner.split_once('.')?;
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (plain && matches!(scope, "vars" | "secrets")).then_some((scope, name))
}

/// `template` with each `{{ vars.NAME }}` replaced by the playbook's value (identities are
/// written with variables only).
fn with_vars(template: &str, playbook: &Playbook) -> String {
    let mut text = template.to_string();
    for (name, value) in &playbook.vars {
        text = text.replace(&format!("{{{{ vars.{name} }}}}"), value);
    }
    assert!(!text.contains("{{"), "{}: {template}", playbook.name);
    text
}

/// The environment and `--var`s of a drill whose every target is the live one: a target read
/// from variables gets the drill's variable set to the live one's value; a target read from
/// secrets gets both secrets one value or, `through_identities`, only the drill's, set to the
/// live target's identity (the live secret unset). Other secrets get values of their kind.
fn drill_on_live(
    playbook: &Playbook,
    through_identities: bool,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut env = BTreeMap::new();
    let mut vars = Vec::new();
    let mut unset = Vec::new();
    for (name, live) in &playbook.targets.live {
        // A live-only target is one the playbook only reads: no drill target of its own to
        // point at it (`a_drill_writing_what_a_playbook_only_reads_is_refused` covers those).
        let Some(drill) = playbook.targets.drill.get(name) else {
            continue;
        };
        match (reads_one(live), reads_one(drill)) {
            (Some(("vars", live)), Some(("vars", drill))) => {
                vars.push(format!("{drill}={}", playbook.vars[live]));
            }
            (Some(("secrets", live)), Some(("secrets", drill))) if through_identities => {
                let identity = playbook.targets.identity.get(name).unwrap_or_else(|| {
                    panic!(
                        "{}: live target `{name}` reads a secret and has no identity: a drill \
                         without production's secrets would refuse to start",
                        playbook.name
                    )
                });
                env.insert(drill.to_string(), with_vars(identity, playbook));
                unset.push(live.to_string());
            }
            (Some(("secrets", live)), Some(("secrets", drill))) => {
                let value = secret_value(drill);
                env.insert(live.to_string(), value.clone());
                env.insert(drill.to_string(), value);
            }
            other => panic!(
                "{}: target `{name}` is not read from two variables or two secrets ({other:?}): \
                 teach this test how to point its drill at the live one",
                playbook.name
            ),
        }
    }
    for secret in &playbook.secrets {
        if !unset.contains(secret) {
            env.entry(secret.clone())
                .or_insert_with(|| secret_value(secret));
        }
    }
    (env, vars)
}

#[test]
fn every_shipped_playbook_refuses_a_drill_on_its_live_targets() {
    let mut cases = Cases::default();
    let mut refused = Vec::new();
    for path in shipped_playbooks() {
        let (_, playbook) = drillbook::validate::load(&path).expect("valid");
        if playbook.targets.is_empty() {
            // monthly-restore-smoke, pitr-restore-drill and weekly-verify write nothing that lives on (they read
            // stores; the restore goes into a throwaway cluster of the run's own): no targets,
            // so nothing a drill could be pointed at. That they write nothing is checked here.
            let writes: Vec<String> = playbook
                .steps
                .iter()
                .flat_map(|step| step.params.write_params())
                .map(|(param, value)| format!("{param} = {value}"))
                .collect();
            assert!(
                writes.is_empty(),
                "{} declares no targets but writes {writes:?}",
                playbook.name
            );
            continue;
        }
        let mut variants = vec![("the live secrets set to the drill's", false)];
        if !playbook.targets.identity.is_empty() {
            variants.push(("the drill's secrets set to the live identities", true));
        }
        for (variant, through_identities) in variants {
            let (env, vars) = drill_on_live(&playbook, through_identities);
            let dir = tempfile::tempdir().expect("tempdir");
            let file = path.display().to_string();
            let mut args = vec!["run".to_string(), file];
            for var in &vars {
                args.extend(["--var".to_string(), var.clone()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut drillbook = Drillbook::in_dir(dir.path())
                .args(&args)
                .env_remove("AWS_ENDPOINT_URL")
                .env_remove("AWS_ENDPOINT_URL_S3");
            for secret in &playbook.secrets {
                drillbook = drillbook.env_remove(secret);
            }
            let output = drillbook.envs(&env).run();
            let mut needles = vec![REFUSED.to_string()];
            for name in playbook.targets.drill.keys() {
                needles.push(format!("drill target `{name}`"));
                needles.push(format!("live target `{name}`"));
            }
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            cases.check(
                &format!("{}, {variant}", playbook.name),
                refused_at_start(&output, dir.path(), &needles),
            );
        }
        refused.push(playbook.name.clone());
    }
    cases.assert_all_passed();
    assert_eq!(
        refused,
        [
            "base-backup",
            "database-restore",
            "nightly-backup",
            "post-release-verify",
            "quarterly-failover",
            "quickstart",
            "storage-mirror",
            "storage-restore",
        ]
    );
}

/// A live target with no drill value is one the playbook only reads (storage-restore's mirror,
/// storage-mirror's bucket): a drill whose own target is pointed at it is refused before any
/// step runs.
#[test]
fn a_drill_writing_what_a_playbook_only_reads_is_refused() {
    let mut cases = Cases::default();
    for (playbook, written, read) in [
        ("storage-restore", "drill_storage", "mirror"),
        ("storage-mirror", "drill_mirror", "storage"),
    ] {
        let path = shipped_playbooks()
            .into_iter()
            .find(|path| path.file_stem().is_some_and(|stem| stem == playbook))
            .expect("shipped");
        let (_, parsed) = drillbook::validate::load(&path).expect("valid");
        assert!(
            parsed.targets.live.contains_key(read) && !parsed.targets.drill.contains_key(read),
            "{playbook}: `{read}` is a live-only target"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let var = format!("{written}={}", parsed.vars[read]);
        let output = Drillbook::in_dir(dir.path())
            .args(&["run", &path.display().to_string(), "--var", &var])
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .run();
        cases.check(
            playbook,
            refused_at_start(
                &output,
                dir.path(),
                &[REFUSED, &format!("live target `{read}`")],
            ),
        );
    }
    cases.assert_all_passed();
}
