//! `runs`, `status` and `report`: what the state directory holds, run by run.

use std::path::PathBuf;

use super::args::{ListFormat, ReportFormat};
use super::{finished_runs, print, refuse};
use crate::engine::Refusal;
use crate::outcome::Outcome;
use crate::report;
use crate::runs::StateDir;

/// Which runs `runs` lists.
pub(super) struct Filter {
    playbook: Option<String>,
    status: Option<String>,
    since: Option<jiff::Timestamp>,
}

/// What `runs --status` accepts: an outcome, or where an unfinished run stands.
const STATUSES: &[&str] = &[
    "succeeded",
    "failed",
    "aborted",
    "objective_missed",
    "interrupted",
    "waiting_approval",
    "invalid",
    "running",
    "stopped",
];

impl Filter {
    pub(super) fn new(
        playbook: Option<String>,
        status: Option<String>,
        since: Option<&str>,
    ) -> Result<Filter, String> {
        if let Some(status) = &status
            && !STATUSES.contains(&status.as_str())
        {
            return Err(format!(
                "--status {status}: expected one of {}",
                STATUSES.join(", ")
            ));
        }
        let since = since
            .map(|text| {
                text.parse::<jiff::Timestamp>().or_else(|_| {
                    crate::duration::Duration::parse(text)
                        .ok()
                        .and_then(|ago| jiff::Timestamp::now().checked_sub(ago.signed()).ok())
                        .ok_or_else(|| {
                            format!(
                                "--since {text}: expected a time (2026-12-01T00:00:00Z) or a duration back from now (7d, 12h)"
                            )
                        })
                })
            })
            .transpose()?;
        Ok(Filter {
            playbook,
            status,
            since,
        })
    }

    fn keeps(&self, state: &crate::state::RunState) -> bool {
        self.playbook.as_ref().is_none_or(|p| *p == state.playbook)
            // An aborted run failed too (exit 1): `failed` finds it, `aborted` only it.
            && self.status.as_ref().is_none_or(|s| {
                s == run_status(state) || (s == "failed" && run_status(state) == "aborted")
            })
            && self.since.is_none_or(|since| state.started_at >= since)
    }
}

pub(super) fn list_runs(dir: &StateDir, filter: &Filter, format: ListFormat) -> Outcome {
    let (runs, broken) = dir.list();
    let runs: Vec<_> = runs.into_iter().filter(|run| filter.keeps(run)).collect();
    if let ListFormat::Json = format {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|state| {
                let end = state.finished.map_or(state.last_at, |(at, _)| at);
                serde_json::json!({
                    "run_id": state.run_id,
                    "playbook": state.playbook,
                    "mode": state.mode.name(),
                    "status": run_status(state),
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
        eprintln!("no runs in {}", dir.root().display());
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
            run_status(state).into(),
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

/// A run's outcome, or for an unfinished one whether its process is still alive.
fn run_status(state: &crate::state::RunState) -> &'static str {
    match state.outcome() {
        Some(_) => state.outcome_name(),
        None if std::path::Path::new(&format!("/proc/{}", state.pid)).exists() => "running",
        None => "stopped",
    }
}

pub(super) fn status(dir: &StateDir, run_id: &str) -> Outcome {
    match dir.load(run_id) {
        // A run in progress: as its console shows it, to this moment.
        Ok(state) if run_status(&state) == "running" => {
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
                print(&format!("\nstatus: {}\n", run_status(&state)));
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
    let text = match format {
        ReportFormat::Text => report::render(&state, report::Format::Text),
        ReportFormat::Md => report::render(&state, report::Format::Markdown),
        ReportFormat::Json => report::render(&state, report::Format::Json),
        ReportFormat::Junit => report::render(&state, report::Format::Junit),
        // The HTML report shows this run's RTO beside the earlier runs of its playbook.
        ReportFormat::Html => {
            let runs = finished_runs(dir);
            let rows: Vec<crate::measure::Row> = crate::history::runs_of(&runs, &state.playbook)
                .into_iter()
                .map(crate::measure::Row::of)
                .collect();
            report::render_html(&state, &rows)
        }
    };
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
