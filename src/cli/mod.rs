//! The command line: parses arguments ([`args`]), calls the library, prints what it says and
//! maps outcomes to exit codes. One file per group of commands.

mod args;
mod history;
mod playbook;
mod run;
mod runbook;
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
            let (dir, view) = match dirs(&state) {
                Ok(dirs) => dirs,
                Err(outcome) => return outcome.into(),
            };
            let run_id = match view.resolve(&run_id) {
                Ok(run_id) => run_id,
                Err(error) => return refuse(Refusal::Usage(error)).into(),
            };
            let options = ResumeOptions {
                run_id,
                accept_changed_playbook,
                secrets_file,
                vars,
                operator: crate::ui::operator_name(operator),
                past_runs: finished_runs(&view),
                state_dir: dir,
            };
            drop(view);
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
            let (dir, view) = match dirs(&state) {
                Ok(dirs) => dirs,
                Err(outcome) => return outcome.into(),
            };
            let run_id = match view.resolve(&run_id) {
                Ok(run_id) => run_id,
                Err(error) => return refuse(Refusal::Usage(error)).into(),
            };
            let decision = engine::Decision {
                step,
                approved: !reject,
                by,
                reason,
                sign_with,
                account: None,
            };
            match engine::approve(&dir, &view, &run_id, &decision) {
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
            let filter = crate::runs::Filter::new(playbook, None, status, since.as_deref());
            match (filter, dirs(&state)) {
                (Err(error), _) => refuse(Refusal::Usage(error)),
                (_, Err(outcome)) => outcome,
                (Ok(filter), Ok((_, view))) => list_runs(&view, &filter, format),
            }
        }
        Command::Watch {
            run_id,
            once,
            state,
        } => one_run(
            &state,
            &run_id,
            |view, run_id| match crate::ui::console::watch(view, run_id, once) {
                Ok(()) => Outcome::Succeeded,
                Err(error) => refuse(Refusal::Usage(error)),
            },
        ),
        Command::Status { run_id, state } => one_run(&state, &run_id, status),
        Command::Verify { run_id, state } => one_run(&state, &run_id, runs::verify),
        Command::Report {
            run_id,
            format,
            output,
            state,
        } => one_run(&state, &run_id, |view, run_id| {
            write_report(view, run_id, format, output)
        }),
        Command::Validate { files } => validate_files(&files),
        Command::Policy {
            files,
            vars,
            mode,
            region,
            account,
            abort_uploads,
        } => playbook::policy(
            &files,
            &vars,
            mode,
            crate::iam::Scope {
                region,
                account,
                abort_uploads,
            },
        ),
        Command::Runbook { files, output } => runbook::runbook(&files, output.as_deref()),
        Command::Plan {
            file,
            format,
            state,
        } => match dirs(&state) {
            Ok((_, view)) => plan(&file, format, &view),
            Err(outcome) => outcome,
        },
        Command::History {
            playbook,
            format,
            state,
        } => match dirs(&state) {
            Ok((_, view)) => history(&view, playbook.as_deref(), format),
            Err(outcome) => outcome,
        },
        Command::Due {
            playbooks,
            every,
            format,
            state,
        } => match dirs(&state) {
            Ok((_, view)) => due(&view, &playbooks, every, format),
            Err(outcome) => outcome,
        },
        Command::Wal(args) => wal::wal(args, verbose),
        Command::Serve {
            listen,
            trusted_proxies,
            identity_header,
            secure_cookies,
            every,
            state,
        } => {
            let dir = match state.dir() {
                Ok(dir) => dir,
                Err(error) => return refuse(Refusal::Usage(error)).into(),
            };
            let options = crate::serve::Options {
                listen,
                users: crate::serve::users::path(&state.state_dir),
                trusted_proxies,
                identity_header,
                secure_cookies,
                every,
            };
            let served = crate::serve::serve(dir, options, |address| {
                eprintln!("drillbook serve: listening on http://{address}");
            });
            match served {
                Ok(()) => Outcome::Succeeded,
                Err(error) => refuse(Refusal::Failed(error)),
            }
        }
        Command::User {
            action: args::UserAction::Add { name, role, state },
        } => add_user(&state, &name, &role),
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

/// The state directory of a command and the runs to read in it (in a shared state, a fresh
/// copy); or the refusal, already said.
fn dirs(state: &args::StateArgs) -> Result<(StateDir, StateDir), Outcome> {
    let dir = state.dir().map_err(|e| refuse(Refusal::Usage(e)))?;
    let view = dir.view().map_err(|e| refuse(Refusal::Failed(e)))?;
    Ok((dir, view))
}

/// A command about one run (`latest`, an id or a prefix of one), with the run brought up to
/// date, its log and output too.
fn one_run(
    state: &args::StateArgs,
    given: &str,
    command: impl FnOnce(&StateDir, &str) -> Outcome,
) -> Outcome {
    let view = match dirs(state) {
        Ok((_, view)) => view,
        Err(outcome) => return outcome,
    };
    let run_id = match view.resolve(given) {
        Ok(run_id) => run_id,
        Err(error) => return refuse(Refusal::Usage(error)),
    };
    if let Err(error) = view.refresh(&run_id) {
        return refuse(Refusal::Failed(error));
    }
    command(&view, &run_id)
}

/// `drillbook user add`: the password from standard input (a terminal asks twice).
fn add_user(state: &args::StateArgs, name: &str, role: &str) -> Outcome {
    let role = match crate::serve::users::Role::parse(role) {
        Ok(role) => role,
        Err(error) => return refuse(Refusal::Usage(error)),
    };
    let password = if std::io::stdin().is_terminal() {
        let asked = dialoguer::Password::new()
            .with_prompt(format!("Password for {name}"))
            .with_confirmation("Again", "the passwords differ")
            .interact();
        match asked {
            Ok(password) => password,
            Err(error) => return refuse(Refusal::Failed(error.to_string())),
        }
    } else {
        let mut line = String::new();
        if let Err(error) = std::io::stdin().read_line(&mut line) {
            return refuse(Refusal::Failed(format!(
                "cannot read the password: {error}"
            )));
        }
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let path = crate::serve::users::path(&state.state_dir);
    match crate::serve::users::add(&path, name, role, &password) {
        Ok(()) => {
            eprintln!(
                "{name} ({}) can sign in; accounts in {}",
                role.name(),
                path.display()
            );
            Outcome::Succeeded
        }
        Err(error) => refuse(Refusal::Usage(error)),
    }
}

/// Says why on standard error, and exits accordingly.
fn mode_of(mode: args::ModeArg) -> crate::event::Mode {
    use crate::event::Mode;
    match mode {
        args::ModeArg::Drill => Mode::Drill,
        args::ModeArg::Incident => Mode::Incident,
        args::ModeArg::Live => Mode::Live,
    }
}

fn refuse(refusal: Refusal) -> Outcome {
    eprint!("{}", refusal.render(color()));
    refusal.outcome()
}
