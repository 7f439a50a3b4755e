//! Targets per mode (`targets: { drill: …, live: … }`): which secrets a run needs. (What a
//! drill compares with the live targets is the interlock's.)

use std::collections::BTreeSet;
use std::path::Path;

use super::Refusal;
use crate::event::Mode;
use crate::model::Playbook;
use crate::secrets::{Secrets, SecretsError};

/// The playbook's secrets for a run in `mode`. A secret read only by the other mode's targets
/// is not needed (a drill must not need production's credentials); it is used when set, so
/// that a drill can compare its targets with the live ones.
pub(super) fn secrets(
    playbook: &Playbook,
    mode: Mode,
    file: Option<&Path>,
) -> Result<Secrets, Refusal> {
    let env = |name: &str| std::env::var(name).ok();
    let optional = other_mode_only(playbook, mode);
    let refused = |e: SecretsError| Refusal::usage(e.to_string());
    let fetch = crate::connect::secrets_manager::fetch_all;
    let manager = playbook
        .secrets_manager
        .as_ref()
        .map(|config| -> crate::secrets::Manager<'_> { (config, &fetch) });
    match Secrets::resolve(&playbook.secrets, file, env, manager) {
        // The optional ones that are missing are left out; any other missing one is an error.
        Err(SecretsError::Missing { names, looked }) => {
            let required: Vec<String> = names
                .iter()
                .filter(|name| !optional.contains(name.as_str()))
                .cloned()
                .collect();
            if !required.is_empty() {
                let looked = looked
                    .into_iter()
                    .filter(|why| {
                        required
                            .iter()
                            .any(|name| why.starts_with(&format!("{name}: ")))
                    })
                    .collect();
                return Err(refused(SecretsError::Missing {
                    names: required,
                    looked,
                }));
            }
            let available: Vec<String> = playbook
                .secrets
                .iter()
                .filter(|name| !names.contains(name))
                .cloned()
                .collect();
            Secrets::resolve(&available, file, env, manager).map_err(refused)
        }
        resolved => resolved.map_err(refused),
    }
}

/// Secrets read only by what a run in `mode` never renders: the other mode's targets and, in
/// a drill, the steps it skips as live-only.
fn other_mode_only(playbook: &Playbook, mode: Mode) -> BTreeSet<&str> {
    let other = match mode {
        Mode::Drill => &playbook.targets.live,
        Mode::Incident | Mode::Live => &playbook.targets.drill,
    };
    let mut here: Vec<String> = playbook.vars.values().cloned().collect();
    here.extend(playbook.targets.of(mode).values().cloned());
    let mut there: Vec<String> = other.values().cloned().collect();
    for step in &playbook.steps {
        let texts = if mode == Mode::Drill && step.live_only {
            &mut there
        } else {
            &mut here
        };
        if let Ok(params) = serde_json::to_value(&step.params) {
            strings(&params, texts);
        }
        texts.extend(step.when.iter().map(|when| format!("{{{{ {when} }}}}")));
        texts.extend(step.approval.iter().map(|gate| gate.prompt.clone()));
    }
    let names = |texts: &[String]| -> BTreeSet<String> {
        texts.iter().flat_map(|text| secret_names(text)).collect()
    };
    let (read_here, read_there) = (names(&here), names(&there));
    playbook
        .secrets
        .iter()
        .filter(|name| read_there.contains(*name) && !read_here.contains(*name))
        .map(String::as_str)
        .collect()
}

fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| strings(item, out)),
        _ => {}
    }
}

fn secret_names(text: &str) -> Vec<String> {
    let env = crate::template::environment();
    crate::template::references(&env, text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| {
            path.strip_prefix("secrets.")
                .map(|name| name.split('.').next().unwrap_or(name).to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYBOOK: &str = r#"version: 1
name: t
secrets: [LIVE_DB, DRILL_DB, PAGE_TOKEN, WEBHOOK]
targets:
  live: { db: "{{ secrets.LIVE_DB }}" }
  drill: { db: "{{ secrets.DRILL_DB }}" }
steps:
  - id: announce
    kind: notify
    webhook: "{{ secrets.WEBHOOK }}"
    message: "{{ target.db }}"
  - id: public_page
    kind: notify
    live_only: true
    url: "https://status.example/api"
    headers: { Authorization: "{{ secrets.PAGE_TOKEN }}" }
    body: "{}"
"#;

    #[test]
    fn a_drill_needs_neither_live_targets_nor_live_only_steps_secrets() {
        let playbook = crate::validate::validate(PLAYBOOK).expect("valid");
        let drill = other_mode_only(&playbook, Mode::Drill);
        assert_eq!(drill, BTreeSet::from(["LIVE_DB", "PAGE_TOKEN"]));
        let incident = other_mode_only(&playbook, Mode::Incident);
        assert_eq!(incident, BTreeSet::from(["DRILL_DB"]));
    }
}
