//! A new run: the playbook validated, variables and secrets resolved, targets checked, the
//! lock taken and the journal started. Nothing runs yet.

use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};

use super::context::{Context, RunFields};
use super::vars::var_templates;
use super::{Again, Prepared, Refusal, contextualize, lock, planned, projection, targets};
use crate::event::{Event, Mode};
use crate::journal::Journal;
use crate::runs::{self, StateDir};
use crate::state::RunState;
use crate::validate;

pub struct RunOptions {
    pub file: PathBuf,
    pub mode: Mode,
    pub vars: Vec<(String, String)>,
    pub secrets_file: Option<PathBuf>,
    pub run_id: Option<String>,
    pub approve: Vec<String>,
    pub approve_all: bool,
    pub operator: String,
    pub state_dir: StateDir,
    pub declared_at: Option<Timestamp>,
    pub max_parallel: usize,
    /// Runs already in the state directory (the caller reads them): those of this playbook
    /// predict this one's RTO.
    pub past_runs: Vec<RunState>,
    /// `--if-due [EVERY]`: run only if the playbook is due, at EVERY or else its own cadence
    /// (judged under its hold, so of many runners started at once only one runs it).
    pub if_due: Option<Option<crate::duration::Duration>>,
}

/// Validates the playbook, resolves variables and secrets, takes the lock and starts the
/// journal of a new run.
pub fn prepare(options: RunOptions) -> Result<Prepared, Refusal> {
    let (source, playbook) = validate::load(&options.file).map_err(Refusal::Invalid)?;
    for step in options.approve.iter() {
        if playbook.step(step).is_none() {
            return Err(Refusal::usage(format!(
                "--approve {step}: the playbook has no step `{step}`"
            )));
        }
    }
    let file = std::path::absolute(&options.file).unwrap_or(options.file.clone());
    let secrets = targets::secrets(&playbook, options.mode, options.secrets_file.as_deref())?;
    let run_id = match options.run_id {
        Some(id) => {
            runs::check_run_id(&id).map_err(Refusal::usage)?;
            if options.state_dir.has_run(&id).map_err(Refusal::Failed)? {
                return Err(already_there(&options.state_dir, &id, &playbook.name));
            }
            id
        }
        None => runs::new_run_id(),
    };
    let started_at = crate::clock::now();
    let declared_at = declared(options.declared_at, started_at)?;
    let projection = projection(
        &playbook,
        &options.past_runs,
        None,
        options.mode,
        declared_at.unwrap_or(started_at),
    );
    let fields = RunFields {
        id: run_id.clone(),
        mode: options.mode,
        playbook: playbook.name.clone(),
        started_at,
        declared_at,
        rto: playbook.objectives.rto,
        rpo: playbook.objectives.rpo,
        dry_run: false,
        projection: Some(projection.clone()),
    };
    let masker = secrets.masker();
    let mut context = Context::new(secrets.as_map(), masker.clone(), fields);
    let templates = var_templates(&playbook, &options.vars, options.mode)?;
    let (warnings, live) =
        contextualize(&playbook, options.mode, &templates, &secrets, &mut context)?;
    let lock = match lock(&options.state_dir, &playbook.name, &run_id) {
        Err(Refusal::Locked { error, .. }) if options.if_due.is_some() => {
            return Err(Refusal::NotDue {
                playbook: playbook.name.clone(),
                why: error.to_string(),
            });
        }
        other => other?,
    };
    if let Some(every) = options.if_due {
        not_due(&options.state_dir, &playbook, &file, source.hash(), every)?;
    }
    let run_dir = options.state_dir.run_dir(&run_id);
    let journal = Journal::create(&run_dir).map_err(|e| {
        Refusal::Failed(format!(
            "cannot start the journal in {}: {e}",
            run_dir.display()
        ))
    })?;
    let journal = super::mirrored(&options.state_dir, &run_id, journal);
    let first_event = Event::RunStarted {
        run_id: run_id.clone(),
        playbook: playbook.name.clone(),
        file: file.display().to_string(),
        playbook_hash: source.hash(),
        mode: options.mode,
        dry_run: false,
        declared_at,
        operator: options.operator.clone(),
        pid: std::process::id(),
        rto: playbook.objectives.rto,
        rpo: playbook.objectives.rpo,
        vars: context.shown_vars().clone(),
        secrets_file: options.secrets_file.as_ref().map(|p| {
            std::path::absolute(p)
                .unwrap_or(p.clone())
                .display()
                .to_string()
        }),
        max_parallel: options.max_parallel,
        steps: planned(&playbook),
    };
    let prior = vec![None; playbook.steps.len()];
    Ok(Prepared {
        run_id,
        run_dir,
        mode: options.mode,
        operator: options.operator.clone(),
        clock_start: declared_at.unwrap_or(started_at),
        masker,
        projection,
        warnings,
        live,
        journal,
        _lock: lock,
        first_event,
        context,
        prior,
        journal_pre_approvals: options.approve_all || !options.approve.is_empty(),
        pre_approver: options.operator,
        pre_approver_account: Some(crate::account::os_account()),
        children: Vec::new(),
        approve: options.approve,
        approve_all: options.approve_all,
        max_parallel: options.max_parallel,
        playbook,
    })
}

/// How far ahead of this machine's clock `--declared-at` may be: the time of a declaration is
/// often read off another machine (the pager, the chat), whose clock may run a little ahead.
const DECLARED_AT_SKEW: SignedDuration = SignedDuration::from_secs(60);

/// `--declared-at` checked against the run's start: later by more than [`DECLARED_AT_SKEW`] is
/// refused (the RTO would count from a moment that has not come, and the report would show a
/// negative recovery time); later by less is another clock's skew, and the run's start is
/// recorded instead, since an incident is not declared after its recovery began.
pub(super) fn declared(
    declared_at: Option<Timestamp>,
    started_at: Timestamp,
) -> Result<Option<Timestamp>, Refusal> {
    match declared_at {
        Some(at) if at.duration_since(started_at) > DECLARED_AT_SKEW => {
            Err(Refusal::DeclaredInFuture {
                declared_at: at,
                now: started_at,
            })
        }
        Some(at) => Ok(Some(at.min(started_at))),
        None => Ok(None),
    }
}

/// `--if-due`: refused (exit 0) unless the playbook is due, by the runs as they are now that
/// the hold is taken.
fn not_due(
    dir: &StateDir,
    playbook: &crate::model::Playbook,
    file: &std::path::Path,
    hash: String,
    every: Option<crate::duration::Duration>,
) -> Result<(), Refusal> {
    let view = dir.view().map_err(Refusal::Failed)?;
    let (runs, _) = view.list();
    let candidate = crate::due::Candidate {
        name: playbook.name.clone(),
        file: file.display().to_string(),
        hash: Ok(hash),
        every: playbook.every,
    };
    let cadence = candidate.cadence(every);
    let verdict = crate::due::check(&candidate, &runs, cadence, crate::clock::now());
    match verdict.due {
        true => Ok(()),
        false => Err(Refusal::NotDue {
            playbook: playbook.name.clone(),
            why: verdict.reason,
        }),
    }
}

/// `--run-id` of a run that exists: a finished one is not run twice (a scheduler may retry),
/// an unfinished one is resumed explicitly, and another playbook's is not touched at all.
fn already_there(dir: &StateDir, run_id: &str, playbook: &str) -> Refusal {
    if let Err(error) = dir.refresh(run_id) {
        return Refusal::Failed(error);
    }
    match dir.load(run_id) {
        Ok(state) if state.playbook != playbook => Refusal::RunIdTaken {
            run_id: run_id.to_string(),
            playbook: state.playbook,
            asked: playbook.to_string(),
        },
        Ok(state) => match state.outcome() {
            Some(outcome) if outcome.is_over() => Refusal::Finished {
                run_id: run_id.to_string(),
                outcome,
                again: Again::Run,
            },
            _ => Refusal::usage(format!(
                "run {run_id} exists and has not finished; continue it with: drillbook resume {run_id}"
            )),
        },
        Err(error) => Refusal::usage(error),
    }
}
