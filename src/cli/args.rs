//! The command line's arguments, as clap reads them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `run --help`'s epilogue: examples, then what each exit code means.
const RUN_HELP: &str = "Examples:
  drillbook run playbooks/quickstart.yaml
  drillbook run playbooks/database-restore.yaml --var store=s3://backups/prod
  drillbook run playbooks/database-restore.yaml --mode incident --declared-at 2026-12-06T02:10:00Z
  drillbook run playbooks/nightly-backup.yaml --mode live   # from a scheduler

Exit codes:
  0    succeeded, every objective met
  1    a step failed
  2    the playbook or the arguments are invalid, or the run was refused (a live target in a
       drill, a run already in progress); nothing ran
  3    succeeded, but an objective (RTO or RPO) was missed
  4    waiting for a decision: drillbook approve RUN STEP, then drillbook resume RUN
  130  interrupted (Ctrl-C, SIGTERM); drillbook resume RUN continues";

#[derive(Parser)]
#[command(
    name = "drillbook",
    version,
    about = "Disaster-recovery playbooks as code: validate, plan and run recovery drills."
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
    /// More detail in the run's log (`-v` debug, `-vv` trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
}

#[derive(Args, Clone)]
pub(super) struct StateArgs {
    /// Where runs are kept (with --state: where this machine works on them).
    #[arg(long, env = "DRILLBOOK_STATE_DIR", default_value = crate::runs::DEFAULT_DIR)]
    pub(super) state_dir: PathBuf,
    /// Keep runs in a store instead, readable and resumable from any machine: `s3://bucket/prefix`
    /// (ideally in another region than what is recovered), or a directory every runner mounts.
    #[arg(long = "state", env = "DRILLBOOK_STATE", value_name = "URL")]
    pub(super) shared: Option<String>,
    /// With --state: how long a runner's hold on a run lasts unless renewed (every third of
    /// it); a runner gone for longer is taken over.
    #[arg(long, env = "DRILLBOOK_LEASE", default_value = "30s", value_parser = parse_lease)]
    pub(super) lease: jiff::SignedDuration,
}

impl StateArgs {
    /// The state directory, or the shared state worked on below it.
    pub(super) fn dir(&self) -> Result<crate::runs::StateDir, String> {
        let Some(url) = &self.shared else {
            return Ok(crate::runs::StateDir::new(self.state_dir.clone()));
        };
        let shared = crate::shared::Shared::open(url, self.lease)?;
        // One working directory per store, named by its URL.
        let name = crate::runs::lock_name(shared.url());
        Ok(crate::runs::StateDir::shared(
            self.state_dir.join("shared").join(name),
            shared,
        ))
    }
}

fn parse_lease(text: &str) -> Result<jiff::SignedDuration, String> {
    let length = crate::duration::Duration::parse(text)?;
    if length.as_std() < std::time::Duration::from_secs(1) {
        return Err("a lease lasts at least 1s, e.g. 30s".into());
    }
    jiff::SignedDuration::try_from(length.as_std()).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Check playbooks and report every error at once (exit 0 when all are valid, 2 otherwise).
    #[command(
        after_help = "Examples:\n  drillbook validate playbooks/*.yaml\n  drillbook validate my-drill.yaml && echo valid"
    )]
    Validate {
        /// Playbook files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the steps in execution order, the parallel stages and the critical path, and
    /// the RTO predicted from past runs of the playbook.
    #[command(
        after_help = "Examples:\n  drillbook plan playbooks/database-restore.yaml\n  drillbook plan playbooks/quarterly-failover.yaml --format dot | dot -Tsvg > failover.svg\n  drillbook plan playbooks/quarterly-failover.yaml --format mermaid"
    )]
    Plan {
        /// The playbook file.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write the Markdown runbook of playbooks: the live procedure by hand, for when drillbook
    /// cannot run (each step's commands, checks and sign-off lines).
    #[command(
        after_help = "Examples:\n  drillbook runbook playbooks/database-restore.yaml > RUNBOOK.md\n  drillbook runbook playbooks/*.yaml -o docs/runbooks   # one NAME.md each"
    )]
    Runbook {
        /// Playbook files (YAML); more than one needs -o.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write NAME.md for each playbook into this directory instead of standard output.
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Print the JSON Schema of the playbook language.
    #[command(after_help = "Example:\n  drillbook schema > schemas/playbook.schema.json")]
    Schema,
    /// Print the least AWS IAM policy the playbooks need: S3 actions per bucket and prefix,
    /// Secrets Manager actions per secret, as their steps would render them (variables with
    /// `--var`; by default the drill's and the live targets both).
    #[command(after_help = POLICY_HELP)]
    Policy {
        /// Playbook files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Set a variable (repeatable), as `run --var` does.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Only what a run in this mode reaches (default: drill and live).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// The region in secrets' ARNs (default `*`).
        #[arg(long)]
        region: Option<String>,
        /// The account id in secrets' ARNs (default `*`).
        #[arg(long)]
        account: Option<String>,
        /// Also allow aborting the multipart uploads a crashed attempt left
        /// (`s3:AbortMultipartUpload`); without it the bucket's AbortIncompleteMultipartUpload
        /// rule removes them.
        #[arg(long)]
        abort_uploads: bool,
    },
    /// Run a playbook: a drill (default) or a live incident.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Continue a run that stopped: crashed, interrupted, failed or waiting for approval.
    #[command(
        after_help = "Examples:\n  drillbook resume latest\n  drillbook resume 20261206-0215 --as alice\n\nExit codes: as for `drillbook run`."
    )]
    Resume {
        /// The run: its id, any prefix of exactly one run id, or `latest` (the newest run).
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
        /// An incident at a terminal: ask with plain line prompts instead of the full-screen
        /// console.
        #[arg(long)]
        no_console: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Record a decision for a step waiting for a human (approval, manual step, re-run).
    #[command(
        after_help = "Examples:\n  drillbook approve latest restore --as bob\n  drillbook approve 20261206-0215 promote --reject --reason \"standby is 2h behind\"\nA run waiting at a terminal takes the decision at once and goes on; a paused run goes on with\n`drillbook resume RUN`. A four-eyes gate needs two different people."
    )]
    Approve {
        /// The run: its id, any prefix of exactly one run id, or `latest` (the newest run).
        run_id: String,
        /// The step whose question is answered (as `status` names it).
        step: String,
        /// Say no instead of yes.
        #[arg(long)]
        reject: bool,
        /// Who decides (default: the OS user).
        #[arg(long = "as", value_name = "NAME")]
        operator: Option<String>,
        /// Why: kept in the journal and shown in every report (most useful with --reject).
        #[arg(long)]
        reason: Option<String>,
        /// Sign the decision with this OpenSSH private key (no passphrase): an `sshsig`
        /// signature over the run, step, question and answer, which reports verify.
        #[arg(long, value_name = "KEY")]
        sign_with: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List runs, newest first.
    #[command(
        after_help = "Examples:\n  drillbook runs --playbook database-restore --since 30d\n  drillbook runs --status failed --format json"
    )]
    Runs {
        /// Only runs of this playbook (its name).
        #[arg(long)]
        playbook: Option<String>,
        /// Only runs that ended so (succeeded, failed, aborted, objective_missed, interrupted,
        /// waiting_approval, invalid) or have not (running, stopped).
        #[arg(long)]
        status: Option<String>,
        /// Only runs started since then: a time (2026-12-01T00:00:00Z) or a duration back
        /// from now (7d, 12h).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The finished runs of a playbook (a name or a file) or of every playbook: verdicts,
    /// RTO and RPO against their objectives, the trend, and the next run's prediction.
    #[command(
        after_help = "Examples:\n  drillbook history\n  drillbook history database-restore --format md"
    )]
    History {
        /// A playbook's name or file (default: every playbook with runs).
        playbook: Option<String>,
        #[arg(long, value_enum, default_value_t = HistoryFormat::Text)]
        format: HistoryFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List the playbooks whose last pass is older than the cadence, that never passed, or
    /// that changed since they last passed (exit 1 if any, 0 when nothing is due).
    #[command(
        after_help = "Examples:\n  drillbook due playbooks/quarterly-failover.yaml --every 92d\n  drillbook due --format json"
    )]
    Due {
        /// Playbook files to check (default: every playbook with runs in the state directory).
        playbooks: Vec<PathBuf>,
        /// How often each must pass, for all of them (default: each playbook's own
        /// `schedule: { every: … }`, else 92d).
        #[arg(long, value_parser = parse_every)]
        every: Option<crate::duration::Duration>,
        #[arg(long, value_enum, default_value_t = DueFormat::Text)]
        format: DueFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Watch a run from any terminal: its steps, the clock against the RTO, the step in
    /// progress and its output, what was found, the decisions waiting. Read-only; q quits.
    #[command(
        after_help = "Examples:\n  drillbook watch latest\n  drillbook watch 20261206-0215 --once   # print it once, for a pipe or a log"
    )]
    Watch {
        /// The run: its id, any prefix of exactly one run id, or `latest` (the newest run).
        run_id: String,
        /// Print the view once as plain lines and exit (also what happens without a terminal).
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show where a run stands.
    #[command(
        after_help = "Examples:\n  drillbook status latest\n  drillbook status 20261206-0215"
    )]
    Status {
        /// The run: its id, any prefix of exactly one run id, or `latest` (the newest run).
        run_id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check a run's journal: every record must carry the hash of the line before it. Says
    /// which line was edited, removed, inserted or moved, and prints the chain's head to
    /// compare with a copy kept elsewhere (exit 0 intact, 1 broken, 2 no such run).
    #[command(
        after_help = "Examples:\n  drillbook verify latest\n  drillbook verify 20261206-0215 && echo intact"
    )]
    Verify {
        /// The run: its id, any prefix of exactly one run id, or `latest` (the newest run).
        run_id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The team's view in a browser: runs and their live view, reports, decisions waiting
    /// across runs, drill health. People sign in with `drillbook user add` accounts or through
    /// an authenticating proxy.
    #[command(
        after_help = "Examples:\n  drillbook user add alice --role approver\n  drillbook serve --listen 127.0.0.1:8080\n  drillbook serve --state s3://dr-state/prod --trusted-proxy 127.0.0.1 --identity-header X-Forwarded-User"
    )]
    Serve {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// An authenticating proxy (oauth2-proxy and the like) whose identity header is
        /// believed, by its address; repeat for several.
        #[arg(long = "trusted-proxy", value_name = "ADDRESS")]
        trusted_proxies: Vec<std::net::IpAddr>,
        /// The header a trusted proxy puts the signed-in name in.
        #[arg(long, value_name = "HEADER", requires = "trusted_proxies")]
        identity_header: Option<String>,
        /// Mark the session cookie Secure: set it when served behind TLS.
        #[arg(long)]
        secure_cookies: bool,
        /// The cadence the drill health page judges every playbook by (default: each one's
        /// own `schedule`, else 92d).
        #[arg(long, value_parser = parse_every)]
        every: Option<crate::duration::Duration>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The web view's accounts: `user add NAME --role viewer|approver` (the password is read
    /// from standard input, or asked for at a terminal).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Archive PostgreSQL's WAL into a store and fetch it back: `archive_command` and
    /// `restore_command` (exit 0 done, 1 failed or not archived, 2 wrong usage or settings).
    #[command(
        after_help = "Examples (postgresql.conf):\n  archive_command = 'drillbook wal push --config /etc/drillbook/wal.conf %p'\n  restore_command = 'drillbook wal fetch --config /etc/drillbook/wal.conf %f %p'"
    )]
    Wal(WalArgs),
    /// Write a run's report.
    #[command(
        after_help = "Examples:\n  drillbook report latest\n  drillbook report 20261206-0215 --format html -o drill.html\n  drillbook report latest --format junit -o drill.xml"
    )]
    Report {
        /// The run: its id, any prefix of exactly one run id, or `latest` (the newest run).
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
pub(super) struct WalArgs {
    #[command(subcommand)]
    pub(super) command: WalCommand,
    /// A file of NAME=value lines (DRILLBOOK_WAL_STORE, AWS_ACCESS_KEY_ID, ...): the settings
    /// for when PostgreSQL's archiver runs drillbook with a minimal environment.
    #[arg(long, global = true, env = crate::wal::CONFIG_VARIABLE, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// The store: s3://bucket/prefix or a directory (default: DRILLBOOK_WAL_STORE, from the
    /// config file or the environment).
    #[arg(long, global = true, value_name = "URL")]
    pub(super) store: Option<String>,
}

#[derive(Subcommand)]
pub(super) enum WalCommand {
    /// Archive one file: `archive_command = 'drillbook wal push %p'`.
    Push {
        /// The file PostgreSQL asks to archive (%p); its name is its name in the archive.
        path: PathBuf,
    },
    /// Restore one file: `restore_command = 'drillbook wal fetch %f %p'`. Exits 1, silently,
    /// when the archive does not have it.
    Fetch {
        /// The archived file's name (%f).
        name: String,
        /// Where to write it (%p).
        path: PathBuf,
    },
}

#[derive(Args)]
pub(super) struct RunArgs {
    pub(super) file: PathBuf,
    /// What the run acts on.
    #[arg(long, value_enum, default_value_t = ModeArg::Drill)]
    pub(super) mode: ModeArg,
    /// Show the resolved plan and check that secrets and templates resolve; touch nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Set a playbook variable (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub(super) vars: Vec<(String, String)>,
    /// Read secrets from this file (KEY=value lines) as well as the environment.
    #[arg(long)]
    pub(super) secrets_file: Option<PathBuf>,
    /// Use this run id (letters, digits, `.`, `-`, `_`); a finished run is not run twice.
    #[arg(long)]
    pub(super) run_id: Option<String>,
    /// Pre-approve this step's gate (repeatable); recorded as pre-approved.
    #[arg(long = "approve", value_name = "STEP")]
    pub(super) approve: Vec<String>,
    /// Pre-approve every approval gate (not manual steps): for unattended drills.
    #[arg(long)]
    pub(super) approve_all: bool,
    /// Who is running it (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub(super) operator: Option<String>,
    /// Incident mode at a terminal: ask with plain line prompts instead of the full-screen
    /// console.
    #[arg(long)]
    pub(super) no_console: bool,
    #[command(flatten)]
    pub(super) state: StateArgs,
    /// When the incident began (RFC 3339), if before this run: the RTO clock starts there.
    #[arg(long, value_parser = parse_timestamp)]
    pub(super) declared_at: Option<jiff::Timestamp>,
    /// Steps running at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) max_parallel: u16,
    /// Run only if the playbook is due (as `drillbook due` judges it: at EVERY, else at its own
    /// `schedule`, else 92d), and no other runner is running it: of many schedulers started at
    /// once, one runs it and the others exit 0 saying why not.
    #[arg(long, value_name = "EVERY", value_parser = parse_every, num_args = 0..=1)]
    pub(super) if_due: Option<Option<crate::duration::Duration>>,
}

#[derive(Subcommand)]
pub(super) enum UserAction {
    /// Adds an account, or replaces the one of that name.
    Add {
        name: String,
        #[arg(long, default_value = "viewer", value_parser = ["viewer", "approver"])]
        role: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

const POLICY_HELP: &str = "Examples:
  drillbook policy playbooks/nightly-backup.yaml playbooks/storage-mirror.yaml > backup-operator.json
  aws iam put-role-policy --role-name BackupOperator --policy-name drillbook \\
    --policy-document file://backup-operator.json
  drillbook policy playbooks/database-restore.yaml --mode incident --region eu-west-1 --account 123456789012

Local directories need no AWS permission: they are named on standard error.";

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum ModeArg {
    /// A rehearsal against `targets.drill`; live-only steps are skipped.
    Drill,
    /// A live recovery against `targets.live`: each step confirmed at a terminal.
    Incident,
    /// Routine work against `targets.live` (the nightly backup, the mirror), usually from a
    /// scheduler.
    Live,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum ListFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum ReportFormat {
    Text,
    Md,
    Json,
    Junit,
    Html,
}

pub(super) fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

pub(super) fn parse_timestamp(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse()
        .map_err(|e| format!("expected an RFC 3339 time like 2026-11-24T14:05:00Z: {e}"))
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum HistoryFormat {
    Text,
    Json,
    Md,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum DueFormat {
    Text,
    Json,
}

pub(super) fn parse_every(text: &str) -> Result<crate::duration::Duration, String> {
    let every = crate::duration::Duration::parse(text)?;
    if every.as_std().is_zero() {
        return Err("the cadence must be longer than 0s, e.g. 92d".into());
    }
    Ok(every)
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum PlanFormat {
    Text,
    Dot,
    Mermaid,
    Json,
}
