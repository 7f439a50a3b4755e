//! `validate`, `plan` and `policy`: what a playbook file says, before anything runs.

use std::path::PathBuf;

use super::args::PlanFormat;
use super::{color, finished_runs, print, refuse};
use crate::outcome::Outcome;
use crate::plan::Plan;
use crate::runs::StateDir;
use crate::validate;

pub(super) fn validate_files(files: &[PathBuf]) -> Outcome {
    let mut code = Outcome::Succeeded;
    for file in files {
        match validate::load(file) {
            Ok((source, playbook)) => {
                let steps = playbook.steps.len();
                print(&format!(
                    "{}: valid ({steps} step{})\n",
                    source.name,
                    if steps == 1 { "" } else { "s" }
                ));
            }
            Err(invalid) => {
                eprint!("{}", invalid.render(color()));
                code = Outcome::Invalid;
            }
        }
    }
    code
}

pub(super) fn plan(file: &std::path::Path, format: PlanFormat, dir: &StateDir) -> Outcome {
    let playbook = match validate::load(file) {
        Ok((_, playbook)) => playbook,
        Err(invalid) => {
            eprint!("{}", invalid.render(color()));
            return Outcome::Invalid;
        }
    };
    let plan = Plan::new(playbook);
    let prediction = || {
        let runs = finished_runs(dir);
        // `plan` speaks of the next drill: predicted from past drills only.
        let past: Vec<_> = crate::history::runs_of(&runs, &plan.playbook.name)
            .into_iter()
            .filter(|run| run.mode == crate::event::Mode::Drill)
            .collect();
        let steps = plan
            .playbook
            .steps
            .iter()
            .map(crate::predict::PlanStep::from_model)
            .collect();
        crate::predict::Forecast::new(
            steps,
            &crate::predict::History::from_runs(&past),
            plan.playbook.objectives.rto,
        )
        .map(|forecast| forecast.prediction())
    };
    print(&match format {
        PlanFormat::Text => {
            let mut text = plan.render_text();
            if let Some(prediction) = prediction() {
                text.push_str(&format!("{prediction}\n"));
            }
            text
        }
        PlanFormat::Dot => plan.render_dot(),
        PlanFormat::Mermaid => plan.render_mermaid(),
        PlanFormat::Json => plan.render_json(prediction().map(|p| p.to_json())),
    });
    Outcome::Succeeded
}

/// `drillbook policy`: the least IAM policy for what the playbooks reach.
pub(super) fn policy(
    files: &[PathBuf],
    vars: &[(String, String)],
    mode: Option<super::args::ModeArg>,
    scope: crate::iam::Scope,
) -> Outcome {
    use crate::event::Mode;
    let modes = match mode {
        Some(mode) => vec![super::mode_of(mode)],
        None => vec![Mode::Drill, Mode::Live],
    };
    let mut reach = crate::iam::Reach::default();
    if let Err(refusal) = crate::engine::reach(files, vars, &modes, &mut reach) {
        return refuse(refusal);
    }
    for local in reach.local() {
        eprintln!("{local}: a local directory, which needs no AWS permission");
    }
    let policy = reach.policy(&scope);
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&policy).unwrap_or_default()
    ));
    Outcome::Succeeded
}
