//! A run's variables: the playbook's, with `--var` overrides, rendered; and on resume, the
//! values the run used, recovered from a journal that keeps them masked.

use std::collections::BTreeMap;

use super::Refusal;
use super::context::{Context, RunFields};
use crate::model::Playbook;
use crate::secrets::Secrets;
use crate::state::RunState;

/// The playbook's variables with `--var` overrides applied and templates rendered.
pub(super) fn resolve_vars(
    playbook: &Playbook,
    overrides: &[(String, String)],
    secrets: &Secrets,
    fields: &RunFields,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut vars = playbook.vars.clone();
    for (name, value) in overrides {
        if !vars.contains_key(name) {
            let hint = crate::diagnostic::did_you_mean(name, vars.keys().map(String::as_str));
            return Err(Refusal::usage(format!(
                "--var {name}: the playbook declares no variable `{name}`{}",
                hint.map(|h| format!("; {h}")).unwrap_or_default()
            )));
        }
        vars.insert(name.clone(), value.clone());
    }
    let context = Context::new(
        &BTreeMap::new(),
        secrets.as_map(),
        RunFields {
            id: fields.id.clone(),
            mode: fields.mode,
            playbook: fields.playbook.clone(),
            started_at: fields.started_at,
            declared_at: fields.declared_at,
            rto: fields.rto,
            rpo: fields.rpo,
            dry_run: fields.dry_run,
            projection: fields.projection.clone(),
        },
    );
    for (name, value) in vars.iter_mut() {
        *value = context
            .render(value, "")
            .map_err(|e| Refusal::usage(format!("variable `{name}`: {e}")))?;
    }
    Ok(vars)
}

/// The variables a resumed run continues with. The journal keeps them masked (a variable may
/// hold a secret's value), so a recorded value with a mask in it is not what the run used: it
/// comes from the playbook when the default renders to the recorded text, or from `--var`
/// given again; otherwise the resume is refused, naming the variable, rather than continuing
/// with `***` in a path or a URL.
pub(super) fn recover_vars(
    playbook: &Playbook,
    state: &RunState,
    given: &[(String, String)],
    secrets: &Secrets,
    fields: &RunFields,
) -> Result<BTreeMap<String, String>, Refusal> {
    for (name, _) in given {
        if !state.vars.contains_key(name) {
            return Err(Refusal::usage(format!(
                "--var {name}: run {} has no variable `{name}`",
                state.run_id
            )));
        }
    }
    let defaults = resolve_vars(playbook, &[], secrets, fields).unwrap_or_default();
    let masker = secrets.masker();
    let mut vars = BTreeMap::new();
    for (name, recorded) in &state.vars {
        let value = if let Some((_, value)) = given.iter().rev().find(|(n, _)| n == name) {
            value.clone()
        } else if !recorded.contains(crate::secrets::MASK) {
            recorded.clone()
        } else {
            match defaults.get(name) {
                Some(default) if masker.mask(default) == *recorded => default.clone(),
                _ => {
                    return Err(Refusal::usage(format!(
                        "cannot resume run {run}: variable `{name}` was journalled as `{recorded}`, with a secret's value masked in it; give it again: drillbook resume {run} --var {name}=VALUE",
                        run = state.run_id
                    )));
                }
            }
        };
        vars.insert(name.clone(), value);
    }
    Ok(vars)
}
