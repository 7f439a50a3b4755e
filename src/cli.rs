//! The command line: parses arguments, calls the library, maps outcomes to exit codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{self, Prepared, Refusal, ResumeOptions, RunOptions};
use crate::event::Mode;
use crate::outcome::Outcome;
use crate::plan::Plan;
use crate::report;
use crate::runs::StateDir;
use crate::validate;

#[derive(Parser)]
#[command(
    name = "drillbook",
    version,
    about = "Disaster-recovery playbooks as code: validate, plan and run recovery drills."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More detail in the run's log (`-v` debug, `-vv` trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Args, Clone)]
struct StateArgs {
    /// Where runs are kept.
    #[arg(long, env = "DRILLBOOK_STATE_DIR", default_value = crate::runs::DEFAULT_DIR)]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Check playbooks and report every error at once (exit 0 when all are valid, 2 otherwise).
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the steps in execution order, the parallel stages and the critical path, and
    /// the RTO predicted from past runs of the playbook.
    Plan {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the JSON Schema of the playbook language.
    Schema,
    /// Run a playbook: a drill (default) or a live incident.
    Run(RunArgs),
    /// Continue a run that stopped: crashed, interrupted, failed or waiting for approval.
    Resume {
        run_id: String,
        /// Continue even though the playbook file changed since the run started.
        #[arg(long)]
        accept_changed_playbook: bool,
        /// Read secrets from this file (KEY=value lines) as well as the environment.
        #[arg(long)]
        secrets_file: Option<PathBuf>,
        /// Who is resuming (default: the OS user).
        #[arg(long = "as", value_name = "NAME")]
        operator: Option<String>,
        /// Give a variable again (repeatable): one the journal could only keep with a secret's
        /// value masked in it.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Record a decision for a step waiting for a human (approval, manual step, re-run).
    Approve {
        run_id: String,
        step: String,
        /// Say no instead of yes.
        #[arg(long)]
        reject: bool,
        /// Who decides (default: the OS user).
        #[arg(long = "as", value_name = "NAME")]
        operator: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List runs, newest first.
    Runs {
        #[command(flatten)]
        state: StateArgs,
    },
    /// The finished runs of a playbook (a name or a file) or of every playbook: verdicts,
    /// RTO and RPO against their objectives, the trend, and the next run's prediction.
    History {
        playbook: Option<String>,
        #[arg(long, value_enum, default_value_t = HistoryFormat::Text)]
        format: HistoryFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List the playbooks whose last pass is older than the cadence, that never passed, or
    /// that changed since they last passed (exit 1 if any, 0 when nothing is due).
    Due {
        /// Playbook files to check (default: every playbook with runs in the state directory).
        playbooks: Vec<PathBuf>,
        /// How often each must pass.
        #[arg(long, default_value = "92d", value_parser = parse_every)]
        every: crate::duration::Duration,
        #[arg(long, value_enum, default_value_t = DueFormat::Text)]
        format: DueFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show where a run stands.
    Status {
        run_id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write a run's report.
    Report {
        run_id: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Args)]
struct RunArgs {
    file: PathBuf,
    #[arg(long, value_enum, default_value_t = ModeArg::Drill)]
    mode: ModeArg,
    /// Show the resolved plan and check that secrets and templates resolve; touch nothing.
    #[arg(long)]
    dry_run: bool,
    /// Set a playbook variable (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Read secrets from this file (KEY=value lines) as well as the environment.
    #[arg(long)]
    secrets_file: Option<PathBuf>,
    /// Use this run id (letters, digits, `.`, `-`, `_`); a finished run is not run twice.
    #[arg(long)]
    run_id: Option<String>,
    /// Pre-approve this step's gate (repeatable); recorded as pre-approved.
    #[arg(long = "approve", value_name = "STEP")]
    approve: Vec<String>,
    /// Pre-approve every approval gate (not manual steps): for unattended drills.
    #[arg(long)]
    approve_all: bool,
    /// Who is running it (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    operator: Option<String>,
    #[command(flatten)]
    state: StateArgs,
    /// When the incident began (RFC 3339), if before this run: the RTO clock starts there.
    #[arg(long, value_parser = parse_timestamp)]
    declared_at: Option<jiff::Timestamp>,
    /// Steps running at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    max_parallel: u16,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Drill,
    Incident,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Md,
    Json,
    Junit,
    Html,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

fn parse_timestamp(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse()
        .map_err(|e| format!("expected an RFC 3339 time like 2026-11-24T14:05:00Z: {e}"))
}

#[derive(Clone, Copy, ValueEnum)]
enum HistoryFormat {
    Text,
    Json,
    Md,
}

#[derive(Clone, Copy, ValueEnum)]
enum DueFormat {
    Text,
    Json,
}

fn parse_every(text: &str) -> Result<crate::duration::Duration, String> {
    let every = crate::duration::Duration::parse(text)?;
    if every.as_std().is_zero() {
        return Err("the cadence must be longer than 0s, e.g. 92d".into());
    }
    Ok(every)
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
    let verbose = cli.verbose;
    let code = match cli.command {
        Command::Run(args) => run(args, verbose),
        Command::Resume {
            run_id,
            accept_changed_playbook,
            secrets_file,
            operator,
            vars,
            state,
        } => {
            let options = ResumeOptions {
                run_id,
                accept_changed_playbook,
                secrets_file,
                vars,
                operator: crate::ui::operator_name(operator),
                past_runs: finished_runs(&StateDir::new(state.state_dir.clone())),
                state_dir: StateDir::new(state.state_dir),
            };
            execute(engine::prepare_resume(options), verbose)
        }
        Command::Approve {
            run_id,
            step,
            reject,
            operator,
            reason,
            state,
        } => {
            let by = crate::ui::operator_name(operator);
            let dir = StateDir::new(state.state_dir);
            match engine::approve(&dir, &run_id, &step, !reject, &by, reason) {
                Ok(message) => {
                    eprintln!("{message}");
                    Outcome::Succeeded
                }
                Err(refusal) => refuse(refusal),
            }
        }
        Command::Runs { state } => list_runs(&StateDir::new(state.state_dir)),
        Command::Status { run_id, state } => status(&StateDir::new(state.state_dir), &run_id),
        Command::Report {
            run_id,
            format,
            output,
            state,
        } => write_report(&StateDir::new(state.state_dir), &run_id, format, output),
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

fn validate_files(files: &[PathBuf]) -> Outcome {
    let mut code = Outcome::Succeeded;
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
                code = Outcome::Invalid;
            }
        }
    }
    code
}

fn plan(file: &std::path::Path, format: PlanFormat, dir: &StateDir) -> Outcome {
    let playbook = match validate::load(file) {
        Ok((_, playbook)) => playbook,
        Err(invalid) => {
            eprint!("{}", invalid.render(color()));
            return Outcome::Invalid;
        }
    };
    let plan = Plan::new(playbook);
    let prediction = || {
        let runs = finished_runs(dir);
        let past = crate::history::runs_of(&runs, &plan.playbook.name);
        let steps = plan
            .playbook
            .steps
            .iter()
            .map(crate::predict::PlanStep::from_model)
            .collect();
        crate::predict::Forecast::new(
            steps,
            &crate::predict::History::from_runs(&past),
            plan.playbook.objectives.rto,
        )
        .map(|forecast| forecast.prediction())
    };
    print(&match format {
        PlanFormat::Text => {
            let mut text = plan.render_text();
            if let Some(prediction) = prediction() {
                text.push_str(&format!("{prediction}\n"));
            }
            text
        }
        PlanFormat::Dot => plan.render_dot(),
        PlanFormat::Mermaid => plan.render_mermaid(),
        PlanFormat::Json => plan.render_json(prediction().map(|p| p.to_json())),
    });
    Outcome::Succeeded
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

fn history(dir: &StateDir, playbook: Option<&str>, format: HistoryFormat) -> Outcome {
    let runs = finished_runs(dir);
    let known = crate::history::playbooks(&runs);
    let names = match playbook {
        None => known,
        Some(arg) => match history_name(arg, &known, dir) {
            Ok(name) => vec![name],
            Err(refusal) => return refuse(refusal),
        },
    };
    let entries: Vec<crate::history::Entry> = names
        .iter()
        .map(|name| crate::history::Entry::new(name, &runs))
        .collect();
    if entries.iter().all(|entry| entry.rows.is_empty()) && !matches!(format, HistoryFormat::Json) {
        match playbook {
            Some(_) => eprintln!(
                "no finished runs of {} in {}",
                names.join(", "),
                dir.root().display()
            ),
            None => eprintln!("no finished runs in {}", dir.root().display()),
        }
        return Outcome::Succeeded;
    }
    print(&match format {
        HistoryFormat::Text => crate::history::render_text(&entries),
        HistoryFormat::Md => crate::history::render_markdown(&entries),
        HistoryFormat::Json => crate::history::render_json(&entries),
    });
    Outcome::Succeeded
}

/// The playbook `history` was asked about: a file (its name, from the loader) or a name with
/// runs in the state directory.
fn history_name(arg: &str, known: &[String], dir: &StateDir) -> Result<String, Refusal> {
    let path = std::path::Path::new(arg);
    if known.iter().any(|name| name == arg) && !path.is_file() {
        return Ok(arg.to_string());
    }
    let looks_like_file = path.exists()
        || arg.ends_with(".yaml")
        || arg.ends_with(".yml")
        || arg.contains(std::path::MAIN_SEPARATOR);
    if looks_like_file {
        return match validate::load(path) {
            Ok((_, playbook)) => Ok(playbook.name),
            Err(invalid) => Err(Refusal::Invalid(invalid)),
        };
    }
    let hint = crate::diagnostic::did_you_mean(arg, known.iter().map(String::as_str))
        .map(|hint| format!("; {hint}"))
        .unwrap_or_default();
    let listed = if known.is_empty() {
        "there are none".to_string()
    } else {
        format!("those with runs: {}", known.join(", "))
    };
    Err(Refusal::Usage(format!(
        "no finished runs of a playbook named `{arg}` in {} ({listed}){hint}; give a playbook name or a playbook file",
        dir.root().display()
    )))
}

fn due(
    dir: &StateDir,
    files: &[PathBuf],
    every: crate::duration::Duration,
    format: DueFormat,
) -> Outcome {
    let runs = finished_runs(dir);
    let mut candidates = Vec::new();
    if files.is_empty() {
        // Every playbook with runs, at the file its newest run recorded.
        let mut newest: Vec<&crate::state::RunState> = Vec::new();
        for run in &runs {
            if !newest.iter().any(|seen| seen.playbook == run.playbook) {
                newest.push(run);
            }
        }
        newest.sort_by(|a, b| a.playbook.cmp(&b.playbook));
        for run in newest {
            let path = std::path::Path::new(&run.file);
            candidates.push(crate::due::Candidate {
                name: run.playbook.clone(),
                file: run.file.clone(),
                hash: crate::loader::read(path)
                    .map(|source| source.hash())
                    .map_err(|error| error.message.clone()),
            });
        }
    } else {
        for file in files {
            match validate::load(file) {
                Ok((source, playbook)) => candidates.push(crate::due::Candidate {
                    name: playbook.name,
                    file: file.display().to_string(),
                    hash: Ok(source.hash()),
                }),
                Err(invalid) => {
                    eprint!("{}", invalid.render(color()));
                    return Outcome::Invalid;
                }
            }
        }
    }
    let now = jiff::Timestamp::now();
    let verdicts: Vec<crate::due::Verdict> = candidates
        .iter()
        .map(|candidate| crate::due::check(candidate, &runs, every, now))
        .collect();
    print(&match format {
        DueFormat::Text => crate::due::render_text(&verdicts),
        DueFormat::Json => crate::due::render_json(&verdicts, every),
    });
    if verdicts.iter().any(|verdict| verdict.due) {
        Outcome::Failed
    } else {
        Outcome::Succeeded
    }
}

/// Says why on standard error, and exits accordingly.
fn refuse(refusal: Refusal) -> Outcome {
    eprint!("{}", refusal.render(color()));
    refusal.outcome()
}

fn run(args: RunArgs, verbose: u8) -> Outcome {
    let past_runs = if args.dry_run {
        Vec::new()
    } else {
        finished_runs(&StateDir::new(args.state.state_dir.clone()))
    };
    let options = RunOptions {
        file: args.file,
        mode: match args.mode {
            ModeArg::Drill => Mode::Drill,
            ModeArg::Incident => Mode::Incident,
        },
        vars: args.vars,
        secrets_file: args.secrets_file,
        run_id: args.run_id,
        approve: args.approve,
        approve_all: args.approve_all,
        operator: crate::ui::operator_name(args.operator),
        state_dir: StateDir::new(args.state.state_dir),
        declared_at: args.declared_at,
        max_parallel: usize::from(args.max_parallel),
        past_runs,
    };
    if args.dry_run {
        return match engine::dry_run(options) {
            Ok(text) => {
                print(&text);
                Outcome::Succeeded
            }
            Err(refusal) => refuse(refusal),
        };
    }
    execute(engine::prepare(options), verbose)
}

/// Sets up the log and the display for a prepared run, runs it, prints the summary.
fn execute(prepared: Result<Prepared, Refusal>, verbose: u8) -> Outcome {
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(refusal) => return refuse(refusal),
    };
    init_log(&prepared.run_dir, verbose);
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let (operator, observers): (
        std::sync::Arc<dyn crate::human::Operator>,
        Vec<std::sync::Arc<dyn crate::human::Observer>>,
    ) = if interactive {
        let elapsed = jiff::Timestamp::now()
            .duration_since(prepared.clock_start)
            .unsigned_abs();
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
        Ok((code, state)) => {
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

fn list_runs(dir: &StateDir) -> Outcome {
    let (runs, broken) = dir.list();
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
            crate::format::format_duration(end.duration_since(state.started_at)),
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
    match state.outcome_name() {
        "unfinished" if std::path::Path::new(&format!("/proc/{}", state.pid)).exists() => "running",
        "unfinished" => "stopped",
        outcome => outcome,
    }
}

fn status(dir: &StateDir, run_id: &str) -> Outcome {
    match dir.load(run_id) {
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

fn write_report(
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
