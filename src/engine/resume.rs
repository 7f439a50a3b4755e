//! A stopped run picked up where its journal ends: the same playbook (or an accepted change),
//! its variables recovered, the lock taken again.

use std::path::PathBuf;

use super::context::{Context, RunFields};
use super::vars::recover_vars;
use super::{Again, Prepared, Refusal, contextualize, lock, planned, projection, targets};
use crate::event::Event;
use crate::journal::Journal;
use crate::runs::StateDir;
use crate::state::RunState;
use crate::validate;

pub struct ResumeOptions {
    pub run_id: String,
    pub accept_changed_playbook: bool,
    pub secrets_file: Option<PathBuf>,
    pub operator: String,
    pub state_dir: StateDir,
    /// Runs already in the state directory, as for [`RunOptions::past_runs`].
    pub past_runs: Vec<RunState>,
    /// `--var` given again: for a variable the journal could only keep masked.
    pub vars: Vec<(String, String)>,
}

/// Picks a stopped run up where its journal ends.
pub fn prepare_resume(options: ResumeOptions) -> Result<Prepared, Refusal> {
    let dir = &options.state_dir;
    dir.refresh(&options.run_id).map_err(Refusal::Failed)?;
    let state = dir.load(&options.run_id).map_err(Refusal::usage)?;
    if let Some(outcome) = state.outcome().filter(|outcome| outcome.recovered()) {
        return Err(Refusal::Finished {
            run_id: state.run_id,
            outcome,
            again: Again::Resume,
        });
    }
    let file = PathBuf::from(&state.file);
    let (source, playbook) = validate::load(&file).map_err(|invalid| Refusal::NoLongerValid {
        run_id: state.run_id.clone(),
        invalid,
    })?;
    let changed = source.hash() != state.playbook_hash;
    if changed && !options.accept_changed_playbook {
        return Err(Refusal::usage(format!(
            "the playbook {} changed since run {} started; resume with --accept-changed-playbook to continue with the new version",
            file.display(),
            state.run_id
        )));
    }
    let secrets_file = options
        .secrets_file
        .or_else(|| state.secrets_file.as_ref().map(PathBuf::from));
    let secrets = targets::secrets(&playbook, state.mode, secrets_file.as_deref())?;
    let lock = lock(dir, &playbook.name, &state.run_id)?;
    // Read again under the lock: a process that held it may have written more (in a shared
    // state, up to the moment its lease was taken over).
    dir.refresh(&state.run_id).map_err(Refusal::Failed)?;
    let run_dir = dir.run_dir(&state.run_id);
    let (journal, replay) = Journal::reopen(&run_dir).map_err(|e| {
        Refusal::Failed(format!(
            "cannot reopen the journal of run {}: {e}",
            state.run_id
        ))
    })?;
    let journal = super::mirrored(dir, &state.run_id, journal);
    let state = RunState::fold(&replay.records).map_err(Refusal::usage)?;
    let projection = projection(
        &playbook,
        &options.past_runs,
        Some(&state.run_id),
        state.mode,
        state.clock_start(),
    );
    projection.resume_from(&state);
    let fields = RunFields {
        id: state.run_id.clone(),
        mode: state.mode,
        playbook: playbook.name.clone(),
        started_at: state.started_at,
        declared_at: state.declared_at,
        rto: playbook.objectives.rto,
        rpo: playbook.objectives.rpo,
        dry_run: false,
        projection: Some(projection.clone()),
    };
    let prior = playbook
        .steps
        .iter()
        .map(|step| state.step(&step.id).cloned())
        .collect();
    let masker = secrets.masker();
    let mut context = Context::new(secrets.as_map(), masker.clone(), fields);
    let templates = recover_vars(&playbook, &state, &options.vars, &context)?;
    let (warnings, live) =
        contextualize(&playbook, state.mode, &templates, &secrets, &mut context)?;
    // What `run` was given ahead of time still holds: a crash does not take it back.
    let pre_approval = state
        .pre_approval
        .clone()
        .unwrap_or_else(|| crate::state::PreApproval {
            by: options.operator.clone(),
            account: Some(crate::account::os_account()),
            all: false,
            steps: Vec::new(),
        });
    let first_event = Event::RunResumed {
        operator: options.operator.clone(),
        pid: std::process::id(),
        playbook_hash: source.hash(),
        steps: changed.then(|| planned(&playbook)),
    };
    Ok(Prepared {
        run_id: state.run_id.clone(),
        run_dir,
        mode: state.mode,
        operator: options.operator,
        clock_start: state.clock_start(),
        masker,
        projection,
        warnings,
        live,
        journal,
        _lock: lock,
        first_event,
        context,
        prior,
        approve: pre_approval.steps,
        approve_all: pre_approval.all,
        pre_approver: pre_approval.by,
        pre_approver_account: pre_approval.account,
        journal_pre_approvals: false,
        children: state.children.clone(),
        max_parallel: state.max_parallel,
        playbook,
    })
}
