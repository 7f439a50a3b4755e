//! The command line: parses arguments, calls the library, maps outcomes to exit codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::plan::Plan;
use crate::validate;

/// Exit codes, as DESIGN.md defines them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const STEP_FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const OBJECTIVE_MISSED: u8 = 3;
    pub const WAITING_FOR_APPROVAL: u8 = 4;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "drillbook",
    version,
    about = "Disaster-recovery playbooks as code: validate, plan and run recovery drills."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check playbooks and report every error at once (exit 0 when all are valid, 2 otherwise).
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the steps in execution order, the parallel stages and the critical path.
    Plan {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Print the JSON Schema of the playbook language.
    Schema,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Text,
    Dot,
    Mermaid,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate { files } => validate_files(&files),
        Command::Plan { file, format } => plan(&file, format),
        Command::Schema => {
            print(&crate::schema::playbook_schema_json());
            exit::OK
        }
    };
    ExitCode::from(code)
}

/// Colour on stderr only for a terminal, and never when NO_COLOR is set.
fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn print(text: &str) {
    // A closed pipe (`drillbook plan x | head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn validate_files(files: &[PathBuf]) -> u8 {
    let mut code = exit::OK;
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
                code = exit::INVALID;
            }
        }
    }
    code
}

fn plan(file: &std::path::Path, format: PlanFormat) -> u8 {
    let playbook = match validate::load(file) {
        Ok((_, playbook)) => playbook,
        Err(invalid) => {
            eprint!("{}", invalid.render(color()));
            return exit::INVALID;
        }
    };
    let plan = Plan::new(playbook);
    print(&match format {
        PlanFormat::Text => plan.render_text(),
        PlanFormat::Dot => plan.render_dot(),
        PlanFormat::Mermaid => plan.render_mermaid(),
        PlanFormat::Json => plan.render_json(),
    });
    exit::OK
}
