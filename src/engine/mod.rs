//! The runner: takes a validated playbook (or a journal to resume), holds the run's lock,
//! and drives the plan through [`run::Runner`]. Every state change goes through the journal
//! first; the terminal and the log only observe.
//!
//! The CLI calls [`prepare`] or [`prepare_resume`] (no side effects beyond the state
//! directory), sets up the display for the run it got, then [`execute`]s it.

mod context;
mod emit;

mod refusal;
mod retry;
mod run;
mod step;
mod targets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use crate::event::{Event, Mode, PlannedStep, Status};
use crate::journal::Journal;
use crate::lock::RunLock;
use crate::model::Playbook;
use crate::outcome::Outcome;
use crate::projection::Projection;
use crate::runs::{self, StateDir};
use crate::secrets::{Masker, Secrets};
use crate::state::RunState;
use crate::validate;

use crate::human::{Observer, Operator};
use context::{Context, RunFields};
pub use refusal::{Again, Refusal};

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
}

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

/// A run ready to go: lock held, journal open, secrets resolved.
pub struct Prepared {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub playbook: Playbook,
    pub mode: Mode,
    pub operator: String,
    /// When the RTO clock started (declared incident time or the first start).
    pub clock_start: Timestamp,
    pub masker: Masker,
    /// Where the RTO clock is projected to stop, for the display; the engine keeps it current.
    pub projection: Arc<Projection>,
    journal: Journal,
    _lock: RunLock,
    first_event: Event,
    context: Context,
    prior: Vec<Option<crate::state::StepState>>,
    approve: Vec<String>,
    approve_all: bool,
    max_parallel: usize,
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
            if options.state_dir.journal(&id).exists() {
                return Err(already_there(&options.state_dir, &id));
            }
            id
        }
        None => runs::new_run_id(),
    };
    let started_at = Timestamp::now();
    let projection = projection(
        &playbook,
        &options.past_runs,
        None,
        options.declared_at.unwrap_or(started_at),
    );
    let fields = RunFields {
        id: run_id.clone(),
        mode: options.mode,
        playbook: playbook.name.clone(),
        started_at,
        declared_at: options.declared_at,
        rto: playbook.objectives.rto,
        rpo: playbook.objectives.rpo,
        dry_run: false,
        projection: Some(projection.clone()),
    };
    let vars = resolve_vars(&playbook, &options.vars, &secrets, &fields)?;
    let context = targeted(
        &playbook,
        options.mode,
        Context::new(&vars, secrets.as_map(), fields),
    )?;
    let lock = lock(&options.state_dir, &playbook.name, &run_id)?;
    let run_dir = options.state_dir.run_dir(&run_id);
    let journal = Journal::create(&run_dir).map_err(|e| {
        Refusal::Failed(format!(
            "cannot start the journal in {}: {e}",
            run_dir.display()
        ))
    })?;
    let first_event = Event::RunStarted {
        run_id: run_id.clone(),
        playbook: playbook.name.clone(),
        file: file.display().to_string(),
        playbook_hash: source.hash(),
        mode: options.mode,
        dry_run: false,
        declared_at: options.declared_at,
        operator: options.operator.clone(),
        pid: std::process::id(),
        rto: playbook.objectives.rto,
        rpo: playbook.objectives.rpo,
        vars: vars.clone(),
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
        operator: options.operator,
        clock_start: options.declared_at.unwrap_or(started_at),
        masker: secrets.masker(),
        projection,
        journal,
        _lock: lock,
        first_event,
        context,
        prior,
        approve: options.approve,
        approve_all: options.approve_all,
        max_parallel: options.max_parallel,
        playbook,
    })
}

/// Picks a stopped run up where its journal ends.
pub fn prepare_resume(options: ResumeOptions) -> Result<Prepared, Refusal> {
    let dir = &options.state_dir;
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
    // Read again under the lock: a process that held it may have written more.
    let run_dir = dir.run_dir(&state.run_id);
    let (journal, replay) = Journal::reopen(&run_dir).map_err(|e| {
        Refusal::Failed(format!(
            "cannot reopen the journal of run {}: {e}",
            state.run_id
        ))
    })?;
    let state = RunState::fold(&replay.records).map_err(Refusal::usage)?;
    let projection = projection(
        &playbook,
        &options.past_runs,
        Some(&state.run_id),
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
    let vars = recover_vars(&playbook, &state, &options.vars, &secrets, &fields)?;
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
        masker: secrets.masker(),
        projection,
        journal,
        _lock: lock,
        first_event,
        context: targeted(
            &playbook,
            state.mode,
            Context::new(&vars, secrets.as_map(), fields),
        )?,
        prior,
        approve: Vec::new(),
        approve_all: false,
        max_parallel: state.max_parallel,
        playbook,
    })
}

/// Runs a prepared run to its end or its next pause. Returns how it ended and the state
/// folded from the journal (for the summary).
pub async fn execute(
    prepared: Prepared,
    operator: Arc<dyn Operator>,
    observers: Vec<Arc<dyn Observer>>,
) -> Result<(Outcome, RunState), String> {
    let journal_path = prepared.journal.path().to_path_buf();
    // The projection sees each record first, so the displays read it up to date.
    let observers = std::iter::once(prepared.projection.clone() as Arc<dyn Observer>)
        .chain(observers)
        .collect();
    let emitter = emit::Emitter::new(prepared.journal, prepared.masker.clone(), observers);
    emitter.emit(prepared.first_event)?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("drillbook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up HTTP: {e}"))?;
    let rto = prepared.playbook.objectives.rto.map(|d| d.0);
    let shared = run::Shared {
        emitter,
        operator,
        context: prepared.context,
        run_dir: prepared.run_dir,
        masker: prepared.masker,
        http,
        mode: prepared.mode,
        approve_all: prepared.approve_all,
        approve: prepared.approve,
        operator_name: prepared.operator,
        clock_start: prepared.clock_start,
        rto,
        prior: prepared.prior,
        asking: tokio::sync::Mutex::new(()),
        repeating: tokio_util::sync::CancellationToken::new(),
        sending: tokio::sync::RwLock::new(()),
        playbook: prepared.playbook,
    };
    // A resumed run finds its throwaway clusters as it left them: started again if they
    // stopped (a crash, a reboot), so later steps can use them.
    let clusters = shared.run_dir.join(crate::steps::backup::CLUSTERS);
    for cluster in crate::connect::cluster::Cluster::found(&clusters) {
        if let Err(error) = cluster.ensure_running().await {
            tracing::warn!("throwaway cluster in {}: {error}", cluster.dir.display());
        }
    }
    let runner = run::Runner::new(shared, prepared.max_parallel);
    let shared = runner.shared();
    let outcome = runner.run().await?;
    // Throwaway clusters go when the run is over; a run that pauses keeps them for `resume`.
    if outcome.is_over() {
        for removed in crate::connect::cluster::destroy_all(&clusters).await {
            tracing::info!("removed {removed}");
        }
    }
    let state = fold(&journal_path)?;
    let outcome = run::final_outcome(outcome, &state);
    post_mortem_notes(&shared, outcome).await?;
    shared.emitter.emit(Event::RunFinished {
        exit_code: outcome.code(),
    })?;
    shared.emitter.finish();
    let state = fold(&journal_path)?;
    Ok((outcome, state))
}

/// Incident mode at a terminal: once the run is over for good, whatever its outcome, the
/// operator is asked for the root cause and the remediation, and the answer is journalled
/// (masked like everything else) for the post-mortem. A run that paused (exit 4) or was
/// interrupted (130) is not over: it is asked when a resume ends it.
async fn post_mortem_notes(shared: &run::Shared, outcome: Outcome) -> Result<(), String> {
    if shared.mode != Mode::Incident || !outcome.is_over() || !shared.operator.interactive() {
        return Ok(());
    }
    let outcome = outcome.name().replace('_', " ");
    let operator = shared.operator.clone();
    let notes = tokio::task::spawn_blocking(move || operator.post_mortem(&outcome))
        .await
        .ok()
        .flatten();
    if let Some(notes) = notes.filter(|notes| !notes.is_empty()) {
        shared.emitter.emit(Event::PostMortemNotes {
            root_cause: notes.root_cause.trim().to_owned(),
            remediation: notes
                .remediation
                .into_iter()
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect(),
            by: notes.by,
        })?;
    }
    Ok(())
}

fn fold(path: &Path) -> Result<RunState, String> {
    let replay = crate::journal::read(path).map_err(|e| e.to_string())?;
    RunState::fold(&replay.records)
}

/// Records a human decision for a run that waits for one (`drillbook approve`).
pub fn approve(
    state_dir: &StateDir,
    run_id: &str,
    step: &str,
    approved: bool,
    by: &str,
    reason: Option<String>,
) -> Result<String, Refusal> {
    let state = state_dir.load(run_id).map_err(Refusal::usage)?;
    let Some(step_state) = state.step(step) else {
        let ids: Vec<&str> = state.plan.iter().map(|s| s.id.as_str()).collect();
        return Err(Refusal::usage(format!(
            "run {run_id} has no step `{step}`{}",
            crate::diagnostic::did_you_mean(step, ids.iter().copied())
                .map(|hint| format!("; {hint}"))
                .unwrap_or_default()
        )));
    };
    let Some(question) = step_state.question.clone() else {
        return Err(Refusal::usage(format!(
            "step `{step}` of run {run_id} is not waiting for a decision (it is {})",
            step_state.status
        )));
    };
    if let Some(expired) = question.expires_at.filter(|at| *at <= Timestamp::now()) {
        return Err(Refusal::usage(format!(
            "the question on `{step}` expired at {expired}; an expired approval counts as rejected (`drillbook resume {run_id}` records it)"
        )));
    }
    let since = step_state.decision_window();
    let earlier = step_state.approvals_for(question.ask, since);
    if approved
        && step_state
            .approvals
            .iter()
            .any(|d| d.approved && d.by == by && d.ask == question.ask && d.at >= since)
    {
        return Err(Refusal::usage(format!(
            "{by} already approved `{step}`; it needs {} different people",
            question.approvers
        )));
    }
    let _lock =
        RunLock::acquire(&state_dir.lock_path(&state.playbook), run_id).map_err(|error| {
            Refusal::Locked {
                error,
                at_terminal: true,
            }
        })?;
    let (mut journal, _) = Journal::reopen(&state_dir.run_dir(run_id))
        .map_err(|e| Refusal::Failed(format!("cannot open the journal of run {run_id}: {e}")))?;
    journal
        .append(Event::ApprovalDecided {
            step: step.to_string(),
            ask: question.ask,
            approved,
            by: by.to_string(),
            reason,
            pre_approved: false,
        })
        .map_err(|e| Refusal::Failed(format!("cannot write the journal of run {run_id}: {e}")))?;
    let verb = match (question.ask, approved) {
        (crate::event::Ask::Attest, true) => "attested",
        (_, true) => "approved",
        (_, false) => "rejected",
    };
    let count = earlier + 1;
    Ok(if approved && count < question.approvers as usize {
        format!(
            "{by} {verb} `{step}` ({count} of {} approvals); someone else must approve too",
            question.approvers
        )
    } else {
        format!("{by} {verb} `{step}`; continue with: drillbook resume {run_id}")
    })
}

/// What `--dry-run` shows: every step with its parameters rendered, secrets masked, step
/// outputs as placeholders. Touches nothing: no state directory, no journal, no lock.
pub fn dry_run(options: RunOptions) -> Result<String, Refusal> {
    let (_, playbook) = validate::load(&options.file).map_err(Refusal::Invalid)?;
    let secrets = targets::secrets(&playbook, options.mode, options.secrets_file.as_deref())?;
    let masker = secrets.masker();
    let fields = RunFields {
        id: options.run_id.clone().unwrap_or_else(|| "dry-run".into()),
        mode: options.mode,
        playbook: playbook.name.clone(),
        started_at: Timestamp::now(),
        declared_at: options.declared_at,
        rto: playbook.objectives.rto,
        rpo: playbook.objectives.rpo,
        dry_run: true,
        projection: None,
    };
    let vars = resolve_vars(&playbook, &options.vars, &secrets, &fields)?;
    let context = targeted(
        &playbook,
        options.mode,
        Context::new(&vars, secrets.as_map(), fields),
    )?;
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
    let mut out = format!(
        "Dry run of {} ({} mode): nothing was touched.\n",
        playbook.name,
        options.mode.name()
    );
    let mut errors = Vec::new();
    for step in &playbook.steps {
        let mut params = serde_json::to_value(&step.params).unwrap_or_default();
        let rendered = context.render_value(&mut params, &step.id);
        masker.mask_json(&mut params);
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
        Ok(out)
    } else {
        Err(Refusal::Unresolved { plan: out, errors })
    }
}

/// The projection of a run of `playbook`, from the past runs of the same playbook (other than
/// `this` run, when resuming one).
fn projection(
    playbook: &Playbook,
    runs: &[RunState],
    this: Option<&str>,
    clock_start: Timestamp,
) -> Arc<Projection> {
    let past: Vec<&RunState> = crate::history::runs_of(runs, &playbook.name)
        .into_iter()
        .filter(|run| Some(run.run_id.as_str()) != this)
        .collect();
    Arc::new(Projection::new(
        playbook
            .steps
            .iter()
            .map(crate::predict::PlanStep::from_model)
            .collect(),
        &crate::predict::History::from_runs(&past),
        playbook.objectives.rto,
        clock_start,
    ))
}

fn planned(playbook: &Playbook) -> Vec<PlannedStep> {
    playbook
        .steps
        .iter()
        .map(|step| PlannedStep {
            id: step.id.clone(),
            kind: step.kind.name().to_string(),
            description: step.description.clone(),
            needs: step.needs.clone(),
            summary: step.params.summary(),
            cleanup: step.cleanup,
            clock_stop: step.clock_stop,
            live_only: step.live_only,
        })
        .collect()
}

/// The context with this mode's targets; a drill whose targets are live ones is refused.
fn targeted(playbook: &Playbook, mode: Mode, context: Context) -> Result<Context, Refusal> {
    let resolved = targets::resolve(playbook, mode, &context)?;
    if mode == Mode::Drill {
        for note in targets::check_drill(playbook, &resolved, &context)? {
            tracing::warn!("{note}");
        }
    }
    Ok(context.with_targets(&resolved))
}

/// The playbook's variables with `--var` overrides applied and templates rendered.
fn resolve_vars(
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
fn recover_vars(
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

fn lock(dir: &StateDir, playbook: &str, run_id: &str) -> Result<RunLock, Refusal> {
    RunLock::acquire(&dir.lock_path(playbook), run_id).map_err(|error| Refusal::Locked {
        error,
        at_terminal: false,
    })
}

/// `--run-id` of a run that exists: a finished one is not run twice (a scheduler may retry),
/// an unfinished one is resumed explicitly.
fn already_there(dir: &StateDir, run_id: &str) -> Refusal {
    match dir.load(run_id) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Retries wait with exponential backoff and jitter. With tokio's clock paused, a
    /// 10 s + 20 s backoff takes no real time, and the virtual clock shows it was waited.
    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_in_virtual_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().display().to_string();
        let playbook = dir.path().join("p.yaml");
        std::fs::write(
            &playbook,
            format!(
                r#"version: 1
name: flaky
steps:
  - id: flaky
    kind: command
    workdir: "{work}"
    # Fails twice, then succeeds.
    run: [sh, -c, "echo x >> tries; [ $(wc -l < tries) -ge 3 ]"]
    retry: {{ attempts: 3, backoff: 10s }}
"#
            ),
        )
        .expect("write");
        let state_dir = StateDir::new(dir.path().join("state"));
        let prepared = prepare(RunOptions {
            file: playbook,
            mode: Mode::Drill,
            vars: Vec::new(),
            secrets_file: None,
            run_id: Some("r".into()),
            approve: Vec::new(),
            approve_all: false,
            operator: "test".into(),
            state_dir: state_dir.clone(),
            declared_at: None,
            max_parallel: 1,
            past_runs: Vec::new(),
        })
        .expect("prepare");
        let real = std::time::Instant::now();
        let virtual_start = tokio::time::Instant::now();
        let (code, state) = execute(prepared, Arc::new(crate::human::Nobody), Vec::new())
            .await
            .expect("run");
        let waited = virtual_start.elapsed();
        assert_eq!(code, Outcome::Succeeded);
        let flaky = state.step("flaky").expect("flaky");
        let statuses: Vec<Status> = flaky.attempts.iter().map(|a| a.status).collect();
        assert_eq!(
            statuses,
            [Status::Failed, Status::Failed, Status::Succeeded]
        );
        // Equal jitter: each delay is between half and all of 10 s, then 20 s.
        let delays: Vec<u64> = crate::journal::read(&state_dir.journal("r"))
            .expect("journal")
            .records
            .iter()
            .filter_map(|r| match &r.event {
                Event::RetryScheduled { delay_ms, .. } => Some(*delay_ms),
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 2);
        assert!((5_000..10_000).contains(&delays[0]), "{delays:?}");
        assert!((10_000..20_000).contains(&delays[1]), "{delays:?}");
        let total = std::time::Duration::from_millis(delays[0] + delays[1]);
        assert!(waited >= total, "virtual {waited:?} < {total:?}");
        assert!(
            real.elapsed() < std::time::Duration::from_secs(5),
            "the backoff was slept for real: {:?}",
            real.elapsed()
        );
    }
}
