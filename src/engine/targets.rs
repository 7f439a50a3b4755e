//! Targets per mode (`targets: { drill: …, live: … }`): which secrets a run needs, the values
//! its steps read as `target.NAME`, and a drill's refusal to start when one of its targets is
//! a live one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::Refusal;
use super::context::Context;
use crate::connect::place::Place;
use crate::event::Mode;
use crate::model::Playbook;
use crate::secrets::Secrets;

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
    let names: Vec<String> = playbook
        .secrets
        .iter()
        .filter(|name| {
            !optional.contains(name.as_str())
                || Secrets::resolve(&[name.to_string()], file, env).is_ok()
        })
        .cloned()
        .collect();
    Secrets::resolve(&names, file, env).map_err(|e| Refusal::usage(e.to_string()))
}

/// This mode's targets, rendered (from vars and secrets).
pub(super) fn resolve(
    playbook: &Playbook,
    mode: Mode,
    context: &Context,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    for (name, value) in playbook.targets.of(mode) {
        let rendered = context
            .render(value, "")
            .map_err(|e| Refusal::usage(format!("target `{name}`: {e}")))?;
        out.insert(name.clone(), rendered);
    }
    Ok(out)
}

/// A drill refuses to start when one of its targets is (or holds, or sits in) a live target:
/// the same database on the same host, an overlapping bucket prefix, the same file. Live
/// targets that cannot be rendered here (their secrets are not set) are not compared; the
/// notes say which.
pub(super) fn check_drill(
    playbook: &Playbook,
    drill: &BTreeMap<String, String>,
    context: &Context,
) -> Result<Vec<String>, Refusal> {
    let mut notes = Vec::new();
    let mut live = Vec::new();
    for (name, value) in &playbook.targets.live {
        match context.render(value, "") {
            Ok(value) => live.push((name, Place::of(&value))),
            Err(_) => notes.push(format!(
                "live target `{name}` does not resolve here (its secrets are not set): not compared"
            )),
        }
    }
    let mut clashes = Vec::new();
    for (name, value) in drill {
        let place = Place::of(value);
        for (live_name, live_place) in &live {
            if place.overlaps(live_place) {
                clashes.push(format!(
                    "drill target `{name}` ({place}) is live target `{live_name}` ({live_place})"
                ));
            }
        }
    }
    if clashes.is_empty() {
        Ok(notes)
    } else {
        Err(Refusal::usage(format!(
            "refusing to start a drill against live targets:\n  {}\na drill acts on `targets.drill`; point those at staging or the failover lab",
            clashes.join("\n  ")
        )))
    }
}

/// Secrets read by the other mode's targets and by nothing a run in `mode` renders.
fn other_mode_only(playbook: &Playbook, mode: Mode) -> BTreeSet<&str> {
    let other = match mode {
        Mode::Drill => &playbook.targets.live,
        Mode::Incident => &playbook.targets.drill,
    };
    let mut read_here = BTreeSet::new();
    let mut texts: Vec<String> = playbook.vars.values().cloned().collect();
    texts.extend(playbook.targets.of(mode).values().cloned());
    for step in &playbook.steps {
        if let Ok(params) = serde_json::to_value(&step.params) {
            strings(&params, &mut texts);
        }
        texts.extend(step.when.iter().map(|when| format!("{{{{ {when} }}}}")));
        texts.extend(step.approval.iter().map(|gate| gate.prompt.clone()));
    }
    for text in &texts {
        read_here.extend(secret_names(text));
    }
    let read_there: BTreeSet<String> = other.values().flat_map(|v| secret_names(v)).collect();
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
