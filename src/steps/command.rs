//! `command`: run a program (never a shell) and keep its output as evidence.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use tokio::io::AsyncRead;

use super::{Done, StepContext, StepFailure};
use crate::connect::postgres::Target;
use crate::loader::Spanned;
use crate::secrets::Masker;

/// Runs `run` (program and arguments, each a template) with `env` and `workdir`; stdout and
/// stderr are captured to the run directory and tailed in the report. A secret never goes in
/// `run` (every user of the host reads a program's arguments): it goes in `env`, or a
/// PostgreSQL URL in `database`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Program and arguments, e.g. `[pg_isready, -h, db.internal]`. A list, never a shell
    /// string, so a template value cannot inject a command.
    pub run: Spanned<Vec<String>>,
    /// Extra environment variables (templates): where secrets go, never into `run`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A PostgreSQL URL (e.g. `{{ target.primary }}`) for the program to connect to, given
    /// the way drillbook gives its own programs theirs: in libpq's environment (`PGHOST`,
    /// `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGCONNECT_TIMEOUT`), never
    /// on the command line. `psql` needs no connection argument then. `env` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The targets the program changes (templates, e.g. `["{{ target.primary }}"]`): a drill
    /// refuses to run it against a live one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
    /// Exit statuses that count as success (default `[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_codes: Option<Vec<i32>>,
    /// Run as this OS user, e.g. `postgres` for `pg_ctl` and `pg_rewind`, which refuse to run
    /// as root. drillbook must then run as root, or as that user already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl super::StepKind for Command {
    const NAME: &'static str = "command";
    const OUTPUTS: &'static [&'static str] = &[
        "exit_code",
        "stdout",
        "stderr",
        "stdout_file",
        "stderr_file",
    ];
    /// An arbitrary program may not be safe to repeat.
    const IDEMPOTENT: bool = false;
    const ARGUMENTS: &'static [super::Arguments] = &[super::Arguments {
        path: "run",
        program: None,
        instead: "pass it in the step's `env:` instead, or a PostgreSQL URL as its `database:`",
    }];

    fn summary(&self) -> String {
        self.run.value.join(" ")
    }

    /// What the program acts on: the database it is given, and what the step declares under
    /// `touches:` (drillbook cannot see inside a program).
    fn writes(&self) -> Vec<crate::steps::Write<'_>> {
        use crate::steps::Write;
        use crate::target::Expect;
        let database = self
            .database
            .iter()
            .map(|url| Write::of("database", url, Expect::Postgres));
        let touched = self
            .touches
            .iter()
            .map(|value| Write::of("touches", value, Expect::Any));
        database.chain(touched).collect()
    }

    fn check(
        &self,
        _node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        if self
            .run
            .value
            .first()
            .is_none_or(|program| program.trim().is_empty())
        {
            out.push(crate::diagnostic::Diagnostic::new(
                self.run.pos,
                self.run.len,
                "`run` needs a program: [program, arg, ...]",
            ));
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let argv = self
            .run
            .value
            .iter()
            .map(|arg| render(arg))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((program, args)) = argv.split_first() else {
            return Err(StepFailure::new("`run` is empty"));
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Its own process group, so that everything it starts can be stopped together.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(url) = &self.database {
            let target = Target::parse(&render(url)?).map_err(StepFailure::of)?;
            command.envs(target.program_env());
        }
        for (name, value) in &self.env {
            command.env(name, render(value)?);
        }
        if let Some(dir) = &self.workdir {
            command.current_dir(render(dir)?);
        }
        if let Some(user) = &self.user
            && let Some((uid, gid)) = switch_to(&render(user)?)?
        {
            // As root, std also drops root's supplementary groups. Our own directory may be
            // private to root: the other user starts at / unless `workdir` says.
            command.uid(uid).gid(gid);
            if self.workdir.is_none() {
                command.current_dir("/");
            }
        }
        let shown = ctx.masker.mask(program);
        let mut child = crate::connect::child::spawn(&mut command).map_err(|e| {
            StepFailure::new(format!(
                "cannot start `{shown}`: {}",
                ctx.masker.mask(&e.to_string())
            ))
        })?;
        let group = ProcessGroup(child.id());

        let stdout = super::capture::pipe(
            child.stdout.take(),
            super::output_file(ctx, "stdout").await?,
            ctx.masker,
            super::capture::OUTPUT,
        );
        let stderr = super::capture::pipe(
            child.stderr.take(),
            super::output_file(ctx, "stderr").await?,
            ctx.masker,
            super::capture::ERRORS,
        );
        let waited = async {
            let status = tokio::select! {
                status = child.wait() => Some(status),
                _ = ctx.cancel.cancelled() => None,
            };
            let status = match status {
                Some(status) => status,
                None => {
                    group.signal(libc::SIGTERM);
                    match tokio::time::timeout(GRACE, child.wait()).await {
                        Ok(status) => status,
                        Err(_) => {
                            group.signal(libc::SIGKILL);
                            child.wait().await
                        }
                    }
                }
            };
            // Whatever the program left running in its group goes with it; otherwise an
            // orphan holding the pipes open would keep the step from ever finishing.
            group.signal(libc::SIGKILL);
            status
        };
        let (status, stdout, stderr) = tokio::join!(waited, stdout, stderr);
        let (stdout, stderr) = (
            stdout.map_err(StepFailure::new)?,
            stderr.map_err(StepFailure::new)?,
        );
        let mut done = Done::default();
        done.outputs
            .insert("stdout".into(), stdout.text.clone().into());
        done.outputs
            .insert("stderr".into(), stderr.text.clone().into());
        done.outputs
            .insert("stdout_file".into(), stdout.file_json());
        done.outputs
            .insert("stderr_file".into(), stderr.file_json());
        done.evidence = tail_lines(&stdout.text, &stderr.text);
        done.evidence.push(stdout.evidence("stdout"));
        done.evidence.push(stderr.evidence("stderr"));
        if ctx.cancel.is_cancelled() {
            let mut failure = StepFailure::cancelled();
            failure.evidence = done.evidence;
            return Err(failure);
        }
        let status =
            status.map_err(|e| StepFailure::new(format!("waiting for `{shown}` failed: {e}")))?;
        let accepted = self.success_codes.as_deref().unwrap_or(&[0]);
        match status.code() {
            Some(code) => {
                done.outputs.insert("exit_code".into(), code.into());
                if accepted.contains(&code) {
                    Ok(done)
                } else {
                    Err(StepFailure {
                        message: format!("`{shown}` exited with status {code}"),
                        evidence: done.evidence,
                        outputs: done.outputs,
                        cancelled: false,
                        permanent: false,
                    })
                }
            }
            None => {
                use std::os::unix::process::ExitStatusExt;
                let signal = status.signal().unwrap_or_default();
                Err(StepFailure {
                    message: format!("`{shown}` was killed by signal {signal}"),
                    evidence: done.evidence,
                    outputs: done.outputs,
                    cancelled: false,
                    permanent: false,
                })
            }
        }
    }
}

/// The ids to start the program with to run it as `user`: none when we are that user already.
fn switch_to(user: &str) -> Result<Option<(u32, u32)>, StepFailure> {
    let found = crate::connect::cluster::lookup_user(user)
        .ok_or_else(|| StepFailure::new(format!("`user`: no OS user `{user}` on this host")))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if me == found.uid {
        Ok(None)
    } else if me == 0 {
        Ok(Some((found.uid, found.gid)))
    } else {
        Err(StepFailure::new(format!(
            "`user`: cannot run as `{user}`: drillbook is not running as root or as `{user}`"
        )))
    }
}

/// Lines of output shown as evidence in the report.
const EVIDENCE_LINES: usize = 10;
/// Characters of each such line.
const EVIDENCE_CHARS: usize = 500;
/// How long a cancelled program gets between SIGTERM and SIGKILL.
const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// A child's process group; dropping it kills the group, so a step abandoned by a timeout
/// leaves nothing running.
pub(crate) struct ProcessGroup(pub(crate) Option<u32>);

impl ProcessGroup {
    pub(crate) fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.0.and_then(|pid| libc::pid_t::try_from(pid).ok()) {
            // SAFETY: kill(2) with a negative pid signals the process group we created for the
            // child (process_group(0) made its pid the group id); it touches no memory.
            unsafe {
                libc::kill(-pid, signal);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// Copies a pipe into `path` with secrets masked, keeping the last `keep` bytes as text (the
/// programs drillbook runs itself, whose errors it reads from the end).
pub(crate) async fn capture(
    pipe: Option<impl AsyncRead + Unpin>,
    path: std::path::PathBuf,
    masker: &Masker,
    keep: usize,
) -> Result<String, StepFailure> {
    let limits = super::capture::Limits {
        head: 0,
        tail: keep,
    };
    let captured = super::capture::pipe(pipe, path, masker, limits)
        .await
        .map_err(StepFailure::new)?;
    // Only the tail: no marker in front of it, so that the text reads as the program's own.
    Ok(captured.tail().to_owned())
}

/// The last lines of output, stderr after stdout, for the report.
fn tail_lines(stdout: &str, stderr: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(EVIDENCE_LINES);
        lines.extend(all[start..].iter().map(|line| {
            // A line may be long (output without newlines): evidence stays readable.
            match line.char_indices().nth(EVIDENCE_CHARS) {
                Some((end, _)) => format!("{name}: {}…", &line[..end]),
                None => format!("{name}: {line}"),
            }
        }));
    }
    lines
}
