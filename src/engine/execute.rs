//! A prepared run driven to its end or its next pause, with what comes after the last step:
//! the throwaway clusters removed, the objectives judged, the post-mortem notes asked for.

use std::sync::Arc;

use super::{Prepared, emit, fold, run};
use crate::event::{Event, Mode};
use crate::human::{Observer, Operator};
use crate::outcome::Outcome;
use crate::state::RunState;

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
    let me = std::process::id();
    emitter.emit(Event::RunProcess {
        pid: me,
        start_time: crate::connect::child::stat(me).map_or(0, |s| s.start_time),
        boot_id: crate::connect::child::boot_id().to_string(),
    })?;
    // Decisions from other shells reach the run here while it waits at a terminal.
    crate::inbox::open(&prepared.run_dir)
        .map_err(|e| format!("cannot open the run's inbox: {e}"))?;
    if prepared.journal_pre_approvals {
        emitter.emit(Event::PreApproved {
            by: prepared.pre_approver.clone(),
            account: prepared.pre_approver_account.clone(),
            all: prepared.approve_all,
            steps: prepared.approve.clone(),
        })?;
    }
    // Before anything runs again: what the last drillbook started and left running goes.
    super::survivors::stop(&prepared.children, &emitter).await?;
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
        pre_approver: prepared.pre_approver,
        pre_approver_account: prepared.pre_approver_account,
        account: crate::account::os_account(),
        operator_name: prepared.operator.clone(),
        run_id: prepared.run_id.clone(),
        clock_start: prepared.clock_start,
        rto,
        live: prepared.live,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RunOptions, prepare};
    use crate::event::Status;
    use crate::runs::StateDir;

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
            if_due: None,
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
