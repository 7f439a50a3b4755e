//! A run's variables: the playbook's, with `--var` overrides; and on resume, the ones the run
//! used, recovered from a journal that shows secrets as `***`.

use std::collections::BTreeMap;

use super::Refusal;
use super::context::Context;
use crate::event::Mode;
use crate::model::Playbook;
use crate::state::RunState;

/// The playbook's variables with `--var` overrides applied: the templates the run renders.
/// A drill cannot change what is live: a variable a live target reads keeps the playbook's
/// value.
pub(super) fn var_templates(
    playbook: &Playbook,
    overrides: &[(String, String)],
    mode: Mode,
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
        if mode == Mode::Drill
            && let Some(target) = live_target_reading(playbook, name)
        {
            return Err(Refusal::usage(format!(
                "--var {name}: live target `{target}` reads `vars.{name}`, and a drill cannot change what is live; point the drill's own targets elsewhere instead"
            )));
        }
        vars.insert(name.clone(), value.clone());
    }
    Ok(vars)
}

/// The first live target a drill also acts on (or its identity) whose template reads
/// `vars.NAME`. A live-only target names what a drill only reads, which a drill may point
/// elsewhere (a staging copy of the mirror); the interlock still keeps writes away from it.
fn live_target_reading<'a>(playbook: &'a Playbook, name: &str) -> Option<&'a str> {
    let env = crate::template::environment();
    let path = format!("vars.{name}");
    let targets = &playbook.targets;
    targets
        .live
        .iter()
        .chain(&targets.identity)
        .filter(|(target, _)| targets.drill.contains_key(*target))
        .find(|(_, template)| {
            crate::template::references(&env, template)
                .unwrap_or_default()
                .iter()
                .any(|read| *read == path || read.starts_with(&format!("{path}.")))
        })
        .map(|(target, _)| target.as_str())
}

/// The variables a resumed run continues with, as templates for `context` (which reads the
/// run's secrets) to render. The journal shows secrets as `***`, so a recorded value with a
/// mask in it is not what the run used: it comes from the playbook when its default shows the
/// same, or from `--var` given again; otherwise the resume is refused, naming the variable,
/// rather than continuing with `***` in a path or a URL.
pub(super) fn recover_vars(
    playbook: &Playbook,
    state: &RunState,
    given: &[(String, String)],
    context: &Context,
) -> Result<BTreeMap<String, String>, Refusal> {
    for (name, _) in given {
        if !state.vars.contains_key(name) {
            return Err(Refusal::usage(format!(
                "--var {name}: run {} has no variable `{name}`",
                state.run_id
            )));
        }
        if state.mode == Mode::Drill
            && let Some(target) = live_target_reading(playbook, name)
        {
            return Err(Refusal::usage(format!(
                "--var {name}: live target `{target}` reads `vars.{name}`, and a drill cannot change what is live"
            )));
        }
    }
    let mut vars = BTreeMap::new();
    for (name, recorded) in &state.vars {
        let value = if let Some((_, value)) = given.iter().rev().find(|(n, _)| n == name) {
            value.clone()
        } else if !recorded.contains(crate::secrets::MASK) {
            recorded.clone()
        } else {
            match playbook.vars.get(name) {
                Some(default) if context.render_shown(default, "").as_ref() == Ok(recorded) => {
                    default.clone()
                }
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
