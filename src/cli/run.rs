//! `run` and `resume`: a run prepared by the engine, shown on a terminal (or logged), and its
//! summary printed.

use std::io::IsTerminal;

use super::args::RunArgs;
use super::{color, finished_runs, print, refuse};
use crate::engine::{self, Prepared, Refusal, RunOptions};
use crate::event::Mode;
use crate::outcome::Outcome;
use crate::report;
use crate::runs::StateDir;

pub(super) fn run(args: RunArgs, verbose: u8) -> Outcome {
    let (dir, past_runs) = if args.dry_run {
        (StateDir::new(args.state.state_dir.clone()), Vec::new())
    } else {
        match super::dirs(&args.state) {
            Ok((dir, view)) => (dir, finished_runs(&view)),
            Err(outcome) => return outcome,
        }
    };
    let options = RunOptions {
        file: args.file,
        mode: super::mode_of(args.mode),
        vars: args.vars,
        secrets_file: args.secrets_file,
        run_id: args.run_id,
        approve: args.approve,
        approve_all: args.approve_all,
        operator: crate::ui::operator_name(args.operator),
        state_dir: dir,
        declared_at: args.declared_at,
        max_parallel: usize::from(args.max_parallel),
        past_runs,
        if_due: args.if_due,
    };
    if args.dry_run {
        return match engine::dry_run(options) {
            Ok((text, warnings)) => {
                warn(&warnings);
                print(&text);
                Outcome::Succeeded
            }
            Err(refusal) => refuse(refusal),
        };
    }
    execute(engine::prepare(options), verbose, !args.no_console)
}

/// Sets up the log and the display for a prepared run, runs it, prints the summary.
/// `console`: an incident at a terminal gets the full-screen console.
pub(super) fn execute(prepared: Result<Prepared, Refusal>, verbose: u8, console: bool) -> Outcome {
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(refusal) => return refuse(refusal),
    };
    init_log(prepared.files_dir(), verbose);
    warn(&prepared.warnings);
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let full_screen = interactive
        && console
        && prepared.mode == Mode::Incident
        && std::io::stdout().is_terminal();
    let incident = full_screen
        .then(|| {
            let root = prepared.run_dir.parent()?.parent()?.to_path_buf();
            crate::ui::console::Incident::open(
                StateDir::new(root),
                &prepared.run_id,
                &prepared.operator,
                Some(prepared.projection.clone()),
                color(),
            )
            .inspect_err(|error| eprintln!("warning: {error}; asking with plain prompts"))
            .ok()
        })
        .flatten();
    let (operator, observers): (
        std::sync::Arc<dyn crate::human::Operator>,
        Vec<std::sync::Arc<dyn crate::human::Observer>>,
    ) = if let Some(incident) = incident {
        let incident = std::sync::Arc::new(incident);
        (incident.clone(), vec![incident])
    } else if interactive {
        let elapsed =
            crate::measure::elapsed(prepared.clock_start, crate::clock::now()).unsigned_abs();
        let started = std::time::Instant::now()
            .checked_sub(elapsed)
            .unwrap_or_else(std::time::Instant::now);
        let terminal = std::sync::Arc::new(crate::ui::Terminal::new(crate::ui::Header {
            playbook: prepared.playbook.name.clone(),
            run_id: prepared.run_id.clone(),
            mode: prepared.mode,
            dry_run: false,
            rto: prepared.playbook.objectives.rto.map(|d| d.0),
            operator: prepared.operator.clone(),
            color: color(),
            started,
            projection: Some(prepared.projection.clone()),
        }));
        (terminal.clone(), vec![terminal])
    } else {
        (
            std::sync::Arc::new(crate::human::Nobody),
            vec![std::sync::Arc::new(
                crate::ui::Plain::new(&prepared.run_id)
                    .with_projection(prepared.projection.clone()),
            )],
        )
    };
    let run_id = prepared.run_id.clone();
    let journal = prepared.run_dir.join(crate::journal::FILE_NAME);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Outcome::Failed;
        }
    };
    let result = runtime.block_on(engine::execute(prepared, operator, observers));
    // Blocking prompt threads may still wait on the terminal: do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok((code, mut state)) => {
            // The summary is the report: with the chain's head, to keep elsewhere.
            state.journal = crate::journal::read(&journal)
                .ok()
                .map(|replay| crate::chain::check(&replay));
            print(&report::render(&state, report::Format::Text));
            if code == Outcome::WaitingApproval {
                for step in state.steps.iter().filter(|s| s.question.is_some()) {
                    eprintln!(
                        "waiting for a decision on `{}`: drillbook approve {run_id} {} [--reject], then drillbook resume {run_id}",
                        step.id, step.id
                    );
                }
            }
            code
        }
        Err(error) => {
            eprintln!("error: run {run_id} stopped: {error}");
            Outcome::Failed
        }
    }
}

/// The run's log file: `<run-dir>/drillbook.log`. Info by default (every journal record),
/// more with `-v`; RUST_LOG wins.
fn init_log(run_dir: &std::path::Path, verbose: u8) {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join("drillbook.log"))
    else {
        return;
    };
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("drillbook={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// Warnings before a run starts: on standard error, and in the run's log when there is one.
fn warn(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
        tracing::warn!("{warning}");
    }
}
