//! The command line: parses arguments ([`args`]), calls the library, prints what it says and
//! maps outcomes to exit codes. One file per group of commands.

mod args;
mod history;
mod playbook;
mod run;
mod runs;
mod wal;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::engine::{self, Refusal, ResumeOptions};
use crate::outcome::Outcome;
use crate::runs::StateDir;

use args::{Cli, Command};
use history::{due, history};
use playbook::{plan, validate_files};
use run::{execute, run};
use runs::{list_runs, status, write_report};

pub fn main() -> ExitCode {
    // `drillbook __guard`: the guard of another drillbook's programs, never in `--help`.
    if std::env::args_os().nth(1).as_deref() == Some(crate::connect::guard::SUBCOMMAND.as_ref()) {
        return crate::connect::guard::serve();
    }
    crate::connect::guard::enable();
    let cli = Cli::parse();
    if let Err(error) = crate::clock::offset() {
        return refuse(Refusal::Usage(error)).into();
    }
    let verbose = cli.verbose;
    let code = match cli.command {
        Command::Run(args) => run(args, verbose),
        Command::Resume {
            run_id,
            accept_changed_playbook,
            secrets_file,
            operator,
            vars,
            no_console,
            state,
        } => {
            let run_id = match StateDir::new(state.state_dir.clone()).resolve(&run_id) {
                Ok(run_id) => run_id,
                Err(error) => return refuse(Refusal::Usage(error)).into(),
            };
            let options = ResumeOptions {
                run_id,
                accept_changed_playbook,
                secrets_file,
                vars,
                operator: crate::ui::operator_name(operator),
                past_runs: finished_runs(&StateDir::new(state.state_dir.clone())),
                state_dir: StateDir::new(state.state_dir),
            };
            execute(engine::prepare_resume(options), verbose, !no_console)
        }
        Command::Approve {
            run_id,
            step,
            reject,
            operator,
            reason,
            sign_with,
            state,
        } => {
            let by = crate::ui::operator_name(operator);
            let dir = StateDir::new(state.state_dir);
            let run_id = match dir.resolve(&run_id) {
                Ok(run_id) => run_id,
                Err(error) => return refuse(Refusal::Usage(error)).into(),
            };
            let decision = engine::Decision {
                step,
                approved: !reject,
                by,
                reason,
                sign_with,
            };
            match engine::approve(&dir, &run_id, &decision) {
                Ok(message) => {
                    eprintln!("{message}");
                    Outcome::Succeeded
                }
                Err(refusal) => refuse(refusal),
            }
        }
        Command::Runs {
            playbook,
            status,
            since,
            format,
            state,
        } => {
            let filter = runs::Filter::new(playbook, status, since.as_deref());
            match filter {
                Ok(filter) => list_runs(&StateDir::new(state.state_dir), &filter, format),
                Err(error) => refuse(Refusal::Usage(error)),
            }
        }
        Command::Watch {
            run_id,
            once,
            state,
        } => {
            let dir = StateDir::new(state.state_dir);
            let watched = dir
                .resolve(&run_id)
                .and_then(|run_id| crate::ui::console::watch(&dir, &run_id, once));
            match watched {
                Ok(()) => Outcome::Succeeded,
                Err(error) => refuse(Refusal::Usage(error)),
            }
        }
        Command::Status { run_id, state } => {
            let dir = StateDir::new(state.state_dir);
            match dir.resolve(&run_id) {
                Ok(run_id) => status(&dir, &run_id),
                Err(error) => refuse(Refusal::Usage(error)),
            }
        }
        Command::Verify { run_id, state } => {
            let dir = StateDir::new(state.state_dir);
            match dir.resolve(&run_id) {
                Ok(run_id) => runs::verify(&dir, &run_id),
                Err(error) => refuse(Refusal::Usage(error)),
            }
        }
        Command::Report {
            run_id,
            format,
            output,
            state,
        } => {
            let dir = StateDir::new(state.state_dir);
            match dir.resolve(&run_id) {
                Ok(run_id) => write_report(&dir, &run_id, format, output),
                Err(error) => refuse(Refusal::Usage(error)),
            }
        }
        Command::Validate { files } => validate_files(&files),
        Command::Plan {
            file,
            format,
            state,
        } => plan(&file, format, &StateDir::new(state.state_dir)),
        Command::History {
            playbook,
            format,
            state,
        } => history(&StateDir::new(state.state_dir), playbook.as_deref(), format),
        Command::Due {
            playbooks,
            every,
            format,
            state,
        } => due(&StateDir::new(state.state_dir), &playbooks, every, format),
        Command::Wal(args) => wal::wal(args, verbose),
        Command::Schema => {
            print(&crate::schema::playbook_schema_json());
            Outcome::Succeeded
        }
    };
    code.into()
}

/// Colour on stderr only for a terminal, and never when NO_COLOR is set.
fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn print(text: &str) {
    // A closed pipe (`drillbook plan x | head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// The runs in the state directory, for history and prediction. A journal that cannot be read
/// is left out with a warning: one broken run must not hide the others.
fn finished_runs(dir: &StateDir) -> Vec<crate::state::RunState> {
    let (runs, broken) = dir.list();
    for (id, error) in broken {
        eprintln!("warning: run {id} left out of the history: {error}");
    }
    runs
}

/// Says why on standard error, and exits accordingly.
fn refuse(refusal: Refusal) -> Outcome {
    eprint!("{}", refusal.render(color()));
    refusal.outcome()
}
