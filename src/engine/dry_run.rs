//! `--dry-run`: every step with its parameters rendered, secrets masked, step outputs as
//! placeholders. Touches nothing.

use super::context::{self, Context, RunFields};
use super::vars::var_templates;
use super::{Refusal, RunOptions, contextualize, targets};
use crate::event::{Mode, Status};
use crate::validate;

/// What `--dry-run` shows: every step with its parameters rendered, secrets masked, step
/// outputs as placeholders, and what the operator should be warned of. Touches nothing: no
/// state directory, no journal, no lock.
pub fn dry_run(options: RunOptions) -> Result<(String, Vec<String>), Refusal> {
    let (_, playbook) = validate::load(&options.file).map_err(Refusal::Invalid)?;
    let secrets = targets::secrets(&playbook, options.mode, options.secrets_file.as_deref())?;
    let masker = secrets.masker();
    let started_at = crate::clock::now();
    let fields = RunFields {
        id: options.run_id.clone().unwrap_or_else(|| "dry-run".into()),
        mode: options.mode,
        playbook: playbook.name.clone(),
        started_at,
        declared_at: super::prepare::declared(options.declared_at, started_at)?,
        rto: playbook.objectives.rto,
        rpo: playbook.objectives.rpo,
        dry_run: true,
        projection: None,
    };
    let mut context = Context::new(secrets.as_map(), masker.clone(), fields);
    let templates = var_templates(&playbook, &options.vars, options.mode)?;
    let (warnings, _) = contextualize(&playbook, options.mode, &templates, &secrets, &mut context)?;
    placeholder_outputs(&playbook, &context);
    let mut out = format!(
        "Dry run of {} ({} mode): nothing was touched.\n",
        playbook.name,
        options.mode.name()
    );
    let mut errors = Vec::new();
    for step in &playbook.steps {
        let mut params = serde_json::to_value(&step.params).unwrap_or_default();
        let rendered = context.render_value_shown(&mut params, &step.id);
        let mut flags = Vec::new();
        if step.cleanup {
            flags.push("cleanup");
        }
        if step.live_only {
            flags.push(if options.mode == Mode::Drill {
                "live-only: skipped in a drill"
            } else {
                "live-only"
            });
        }
        if step.approval.is_some() {
            flags.push("approval");
        }
        out.push_str(&format!(
            "\n{} ({}){}\n",
            step.id,
            step.kind,
            if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(", "))
            }
        ));
        if let Some(map) = params.as_object() {
            for (key, value) in map {
                let shown = match value {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                out.push_str(&format!("  {key}: {shown}\n"));
            }
        }
        if let Err(error) = rendered {
            errors.push(format!("{}: {}", step.id, masker.mask(&error)));
        }
    }
    if errors.is_empty() {
        Ok((out, warnings))
    } else {
        Err(Refusal::Unresolved { plan: out, errors })
    }
}

/// Every step as succeeded, its outputs as placeholders (`<backup.key>`): what a template may
/// read from steps before any has run.
pub(super) fn placeholder_outputs(playbook: &crate::model::Playbook, context: &Context) {
    for step in &playbook.steps {
        let outputs = step
            .kind
            .outputs()
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    serde_json::Value::from(format!("<{}.{name}>", step.id)),
                )
            })
            .collect();
        context.set_step(
            &step.id,
            context::StepView {
                status: Status::Succeeded,
                outputs,
                skipped_reason: None,
            },
        );
    }
}
