//! `runs`, `status` and `report`: what the state directory holds, run by run.

use std::path::PathBuf;

use super::args::{ListFormat, ReportFormat};
use super::{finished_runs, print, refuse};
use crate::engine::Refusal;
use crate::outcome::Outcome;
use crate::report;
use crate::runs::StateDir;

pub(super) fn list_runs(
    dir: &StateDir,
    filter: &crate::runs::Filter,
    format: ListFormat,
) -> Outcome {
    let (runs, broken) = dir.list();
    let runs: Vec<_> = runs
        .into_iter()
        .filter(|run| filter.keeps(dir, run))
        .collect();
    if let ListFormat::Json = format {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|state| {
                let end = state.finished.map_or(state.last_at, |(at, _)| at);
                serde_json::json!({
                    "run_id": state.run_id,
                    "playbook": state.playbook,
                    "mode": state.mode.name(),
                    "status": dir.status_of(state),
                    "exit_code": state.finished.map(|(_, code)| code),
                    "started_at": state.started_at,
                    "finished_at": state.finished.map(|(at, _)| at),
                    "duration_seconds": crate::measure::elapsed(state.started_at, end).as_secs_f64(),
                })
            })
            .collect();
        let broken: Vec<serde_json::Value> = broken
            .iter()
            .map(|(id, error)| serde_json::json!({ "run_id": id, "error": error }))
            .collect();
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(
                &serde_json::json!({ "runs": rows, "unreadable": broken })
            )
            .unwrap_or_default()
        ));
        return Outcome::Succeeded;
    }
    if runs.is_empty() && broken.is_empty() {
        eprintln!("no runs in {}", dir.location());
        return Outcome::Succeeded;
    }
    let mut rows = vec![[
        "RUN".to_string(),
        "PLAYBOOK".into(),
        "MODE".into(),
        "STATUS".into(),
        "STARTED".into(),
        "DURATION".into(),
    ]];
    for state in &runs {
        let end = state.finished.map_or(state.last_at, |(at, _)| at);
        rows.push([
            state.run_id.clone(),
            state.playbook.clone(),
            state.mode.name().into(),
            dir.status_of(state).into(),
            state.started_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            crate::format::format_duration(crate::measure::elapsed(state.started_at, end)),
        ]);
    }
    print(&crate::format::columns(&rows, ""));
    for (id, error) in broken {
        eprintln!("warning: run {id}: {error}");
    }
    Outcome::Succeeded
}

pub(super) fn status(dir: &StateDir, run_id: &str) -> Outcome {
    match dir.load(run_id) {
        // A run in progress: as its console shows it, to this moment.
        Ok(state) if dir.status_of(&state) == "running" => {
            match crate::ui::console::snapshot(dir, run_id) {
                Ok(view) => print(&view),
                Err(error) => return refuse(Refusal::Usage(error)),
            }
            print("\nstatus: running\n");
            Outcome::Succeeded
        }
        Ok(state) => {
            print(&report::render(&state, report::Format::Text));
            for step in state.steps.iter().filter(|s| s.question.is_some()) {
                print(&format!(
                    "\nwaiting for a decision on `{}`: drillbook approve {run_id} {}\n",
                    step.id, step.id
                ));
            }
            if state.outcome().is_none() {
                print(&format!("\nstatus: {}\n", dir.status_of(&state)));
            }
            Outcome::Succeeded
        }
        Err(error) => refuse(Refusal::Usage(error)),
    }
}

/// `drillbook verify`: the journal's hash chain, link by link.
pub(super) fn verify(dir: &StateDir, run_id: &str) -> Outcome {
    let state = match dir.load(run_id) {
        Ok(state) => state,
        Err(error) => return refuse(Refusal::Usage(error)),
    };
    let Some(chain) = state.journal else {
        return refuse(Refusal::Failed(format!(
            "the journal of run {run_id} was not read"
        )));
    };
    let head = chain.head.as_deref().unwrap_or("none (empty journal)");
    if chain.intact() {
        print(&format!(
            "journal of run {run_id}: {} records, hash chain intact\nhead sha256 {head}\n",
            chain.records
        ));
        if chain.unchained > 0 {
            print(&format!(
                "note: the first {} records were written before drillbook kept the chain and are not covered by it\n",
                chain.unchained
            ));
        }
        return Outcome::Succeeded;
    }
    let mut text = format!(
        "journal of run {run_id} has been altered ({} broken link{}):\n",
        chain.breaks.len(),
        if chain.breaks.len() == 1 { "" } else { "s" }
    );
    for line in &chain.breaks {
        text.push_str(&format!("  {line}\n"));
    }
    text.push_str(&format!("head sha256 {head}\n"));
    eprint!("{text}");
    Outcome::Failed
}

pub(super) fn write_report(
    dir: &StateDir,
    run_id: &str,
    format: ReportFormat,
    output: Option<PathBuf>,
) -> Outcome {
    let state = match dir.load(run_id) {
        Ok(state) => state,
        Err(error) => return refuse(Refusal::Usage(error)),
    };
    let format = match format {
        ReportFormat::Text => report::Format::Text,
        ReportFormat::Md => report::Format::Markdown,
        ReportFormat::Json => report::Format::Json,
        ReportFormat::Junit => report::Format::Junit,
        ReportFormat::Html => report::Format::Html,
    };
    // The HTML report shows this run's RTO beside the earlier runs of its playbook.
    let runs = match format {
        report::Format::Html => finished_runs(dir),
        _ => Vec::new(),
    };
    let text = report::render_among(&state, &runs, format);
    match output {
        Some(path) => match std::fs::write(&path, text) {
            Ok(()) => Outcome::Succeeded,
            Err(error) => refuse(Refusal::Failed(format!(
                "cannot write {}: {error}",
                path.display()
            ))),
        },
        None => {
            print(&text);
            Outcome::Succeeded
        }
    }
}
