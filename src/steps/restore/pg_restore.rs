//! pg_restore, the program: run with the step's flags into a database, its errors read and
//! sorted by `allow_errors`; and the restore straight into the target (`in_place: true`, or a
//! throwaway cluster's database).

use super::{CONNECT_TIMEOUT, Prepared, Restore, Restored};
use crate::connect::pg_tools::Version;
use crate::connect::postgres::{self, Target};
use crate::steps::command::capture;
use crate::steps::{StepContext, StepFailure, output_file};

impl Restore {
    /// Restores into the target itself (or a throwaway cluster's database), as pg_restore
    /// does with `--clean`: a failure leaves it partly restored.
    pub(super) async fn in_place(
        &self,
        ctx: &StepContext<'_>,
        prepared: &Prepared,
        target: &Target,
        server: &Inspected,
        allowed: &[regex::Regex],
    ) -> Result<Restored, StepFailure> {
        let mut evidence = Vec::new();
        if let Some(created) = create_if_missing(target, server).await? {
            evidence.push(created);
        }
        let ran = self
            .pg_restore(ctx, prepared, target, server.version, allowed)
            .await?;
        evidence.push(ran.line.clone());
        evidence.extend(ran.allowed_note());
        if let Some(mut failure) = ran.failure(|refused| {
            if refused {
                format!(
                    "{target} is partly restored (--clean dropped the objects it restored over)"
                )
            } else {
                format!("{target} may be partly restored")
            }
        }) {
            failure.evidence.splice(0..0, evidence);
            return Err(failure);
        }
        Ok(Restored {
            evidence,
            ignored: ran.ignored.len(),
            previous: String::new(),
            scratch: String::new(),
        })
    }

    /// Runs pg_restore with the step's flags and jobs into `into`, the connection passed
    /// through `PG*` variables (never a password on its command line).
    pub(super) async fn pg_restore(
        &self,
        ctx: &StepContext<'_>,
        prepared: &Prepared,
        into: &Target,
        server: Version,
        allowed: &[regex::Regex],
    ) -> Result<Ran, StepFailure> {
        let flags = self.flags.clone().unwrap_or_else(|| {
            ["--clean", "--if-exists", "--no-owner"]
                .map(String::from)
                .to_vec()
        });
        let program = &prepared.pg_restore;
        let mut command = tokio::process::Command::new(&program.path);
        command
            .args(&flags)
            .arg(format!("--jobs={}", self.jobs.unwrap_or(1).max(1)))
            .arg(format!("--dbname={}", into.database()))
            .arg("--no-password")
            .arg(&prepared.input)
            .envs(into.program_env())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = crate::connect::child::spawn(&mut command).map_err(|e| {
            StepFailure::new(format!("cannot start {}: {e}", program.path.display()))
        })?;
        let stderr_file = output_file(ctx, "pg_restore.stderr").await?;
        let restoring = std::time::Instant::now();
        let stderr_pipe = child.stderr.take();
        let (status, stderr) = tokio::join!(
            child.wait(),
            capture(stderr_pipe, stderr_file, ctx.masker, 256 * 1024,)
        );
        let status = status.map_err(|e| StepFailure::new(format!("pg_restore: {e}")))?;
        let stderr = stderr?;
        let (ignored, refused) = classify(&stderr, allowed);
        let line = format!(
            "pg_restore {} {} into {into} (PostgreSQL {server}): {status}, {:.1} s",
            program.version,
            flags.join(" "),
            restoring.elapsed().as_secs_f64()
        );
        Ok(Ran {
            status,
            ignored,
            refused,
            stderr,
            line,
            output: format!("output/{}.{}.pg_restore.stderr", ctx.id, ctx.attempt),
        })
    }
}

/// What pg_restore did.
pub(super) struct Ran {
    status: std::process::ExitStatus,
    /// Its errors that `allow_errors` let pass, and the others.
    pub(super) ignored: Vec<String>,
    refused: Vec<String>,
    stderr: String,
    /// The evidence line: version, flags, destination, status, time.
    pub(super) line: String,
    /// Where its whole stderr is, in the run's directory.
    output: String,
}

impl Ran {
    pub(super) fn allowed_note(&self) -> Option<String> {
        self.ignored.first().map(|first| {
            format!(
                "{} error(s) allowed by allow_errors, e.g. {first}",
                self.ignored.len()
            )
        })
    }

    /// The failure when pg_restore failed, its message ending with `consequence(refused)`
    /// (whether errors `allow_errors` does not cover were the reason); `None` when it did not.
    pub(super) fn failure(&self, consequence: impl Fn(bool) -> String) -> Option<StepFailure> {
        let refused = !self.refused.is_empty();
        if !refused && (self.status.success() || !self.ignored.is_empty()) {
            return None;
        }
        let head = if refused {
            format!(
                "pg_restore reported {} error(s) not allowed by allow_errors",
                self.refused.len()
            )
        } else {
            format!("pg_restore failed ({})", self.status)
        };
        let consequence = consequence(refused);
        let mut failure = StepFailure::new(if consequence.is_empty() {
            head
        } else {
            format!("{head}; {consequence}")
        });
        failure.evidence.extend(
            self.refused
                .iter()
                .take(ERRORS_SHOWN)
                .map(|line| format!("error: {line}")),
        );
        if self.refused.len() > ERRORS_SHOWN {
            failure.evidence.push(format!(
                "… and {} more in {}",
                self.refused.len() - ERRORS_SHOWN,
                self.output
            ));
        }
        if !refused {
            failure
                .evidence
                .extend(self.stderr.lines().rev().take(10).map(String::from));
        }
        Some(failure)
    }
}

/// pg_restore's errors shown in a failure, at most.
const ERRORS_SHOWN: usize = 20;
/// pg_restore's error lines, split into those `allow_errors` lets pass and the rest.
fn classify(stderr: &str, allowed: &[regex::Regex]) -> (Vec<String>, Vec<String>) {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("pg_restore: error: "))
        .map(String::from)
        .partition(|line| allowed.iter().any(|pattern| pattern.is_match(line)))
}

/// The target server as found before anything is changed.
pub(super) struct Inspected {
    pub(super) version: crate::connect::pg_tools::Version,
    exists: bool,
    client: tokio_postgres::Client,
}

/// Checks the server answers, its version, and whether the target database exists.
pub(super) async fn inspect(target: &Target) -> Result<Inspected, StepFailure> {
    let admin = target.with_database("postgres");
    let client = match admin.connect(CONNECT_TIMEOUT).await {
        Ok(client) => client,
        // No access to the maintenance database: the target itself must exist then.
        Err(_) => target
            .connect(CONNECT_TIMEOUT)
            .await
            .map_err(StepFailure::of)?,
    };
    let version = postgres::server_version(target, &client)
        .await
        .map_err(StepFailure::of)?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&target.database()],
        )
        .await
        .map_err(|e| StepFailure::of(target.error(&e)))?
        .is_some();
    Ok(Inspected {
        version,
        exists,
        client,
    })
}

/// Creates the target database when it is missing; says so when it did.
async fn create_if_missing(
    target: &Target,
    server: &Inspected,
) -> Result<Option<String>, StepFailure> {
    if server.exists {
        return Ok(None);
    }
    server
        .client
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            postgres::quote_ident(target.database())
        ))
        .await
        .map_err(|e| StepFailure::of(target.error(&e)))?;
    Ok(Some(format!("created the database {}", target.database())))
}
