//! What playbooks reach in AWS, rendered as a run in each mode would render it (variables with
//! `--var`, the mode's targets, secrets as placeholders): the input of `drillbook policy`.
//! Touches nothing and needs no secret.

use std::path::PathBuf;

use super::Refusal;
use super::context::{Context, RunFields};
use super::dry_run::placeholder_outputs;
use super::vars::var_templates;
use crate::event::Mode;
use crate::iam::Reach;
use crate::secrets::{SecretRef, Secrets};
use crate::steps::Need;
use crate::validate;

/// Where a secret's placeholder starts: a rendered value holding it came from a secret.
const SECRET_MARK: &str = "<secret:";

/// Adds what each playbook in `files` reaches in `modes` to `reach`.
pub fn reach(
    files: &[PathBuf],
    vars: &[(String, String)],
    modes: &[Mode],
    reach: &mut Reach,
) -> Result<(), Refusal> {
    for file in files {
        let (_, playbook) = validate::load(file).map_err(Refusal::Invalid)?;
        let placeholders = |name: &str| Some(format!("{SECRET_MARK}{name}>"));
        let secrets = Secrets::resolve(&playbook.secrets, None, placeholders, None)
            .map_err(|e| Refusal::usage(e.to_string()))?;
        if let Some(manager) = &playbook.secrets_manager {
            for name in &playbook.secrets {
                if let Some(reference) = manager.reference(name) {
                    reach.read_secret(&reference);
                }
            }
        }
        // A variable the playbook does not declare is an error only if no playbook does.
        let own: Vec<(String, String)> = vars
            .iter()
            .filter(|(name, _)| playbook.vars.contains_key(name))
            .cloned()
            .collect();
        for &mode in modes {
            let started_at = crate::clock::now();
            let fields = RunFields {
                id: "policy".into(),
                mode,
                playbook: playbook.name.clone(),
                started_at,
                declared_at: None,
                rto: playbook.objectives.rto,
                rpo: playbook.objectives.rpo,
                dry_run: true,
                projection: None,
            };
            let mut context = Context::new(secrets.as_map(), secrets.masker(), fields);
            // A drill may not change what a live target reads: read the live ones' values.
            let templates = var_templates(&playbook, &own, Mode::Live)?;
            context.set_vars(&templates).map_err(Refusal::Usage)?;
            context
                .set_targets(playbook.targets.of(mode))
                .map_err(Refusal::Usage)?;
            placeholder_outputs(&playbook, &context);
            for step in &playbook.steps {
                if mode == Mode::Drill && step.live_only {
                    continue;
                }
                for access in step.params.access() {
                    let where_ = || {
                        format!(
                            "{}: step `{}`, `{}` ({} mode)",
                            playbook.name,
                            step.id,
                            access.param,
                            mode.name()
                        )
                    };
                    let value = context
                        .render(access.value, &step.id)
                        .map_err(|e| Refusal::usage(format!("{}: {e}", where_())))?;
                    if let Some(at) = value.find(SECRET_MARK) {
                        let name = value[at + SECRET_MARK.len()..]
                            .split('>')
                            .next()
                            .unwrap_or_default();
                        return Err(Refusal::usage(format!(
                            "{}: it comes from secret `{name}`, so the policy cannot name it; give it in a variable (`--var`)",
                            where_()
                        )));
                    }
                    if access.needs.contains(&Need::WriteSecret) {
                        let reference = SecretRef::parse(&value)
                            .map_err(|e| Refusal::usage(format!("{}: {e}", where_())))?;
                        reach.write_secret(&reference);
                    } else {
                        reach
                            .store(&value, access.needs)
                            .map_err(|e| Refusal::usage(format!("{}: {e}", where_())))?;
                    }
                }
            }
        }
    }
    let declared: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|file| validate::load(file).ok())
        .flat_map(|(_, playbook)| playbook.vars.into_keys())
        .collect();
    if let Some((name, _)) = vars.iter().find(|(name, _)| !declared.contains(name)) {
        return Err(Refusal::usage(format!(
            "--var {name}: no playbook declares a variable `{name}`"
        )));
    }
    Ok(())
}
