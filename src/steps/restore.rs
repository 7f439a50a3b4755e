//! `restore`: verify a backup against its manifest, then `pg_restore` it into a target.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::CLUSTERS;
use super::command::{ProcessGroup, capture};
use super::{Done, Progress, StepContext, StepFailure, Unit, output_file};
use crate::connect::cluster::Cluster;
use crate::connect::postgres::{self, Target};
use crate::connect::store::Store;
use crate::duration::human_bytes;
use crate::manifest::{self, Manifest};

/// Downloads `backup` from `store`, checking size and SHA-256 against its manifest before
/// `pg_restore` sees a byte, then restores it into `target` with
/// `pg_restore --clean --if-exists --no-owner`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The backup key, usually `{{ steps.assess.outputs.backup }}`.
    pub backup: String,
    /// The store holding the backup.
    pub store: String,
    /// PostgreSQL URL of the target database, or `ephemeral` for a throwaway local cluster
    /// that drillbook creates and removes at cleanup.
    pub target: String,
    /// pg_restore parallel jobs (the dump is downloaded to a temporary file for `-j`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    /// pg_restore flags. Default: `[--clean, --if-exists, --no-owner]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    /// Regular expressions for pg_restore errors that do not fail the step
    /// (e.g. `role "app" does not exist`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_errors: Vec<String>,
}

impl super::StepKind for Restore {
    const NAME: &'static str = "restore";
    const OUTPUTS: &'static [&'static str] = &["target", "database", "backup", "errors_ignored"];
    /// `--clean --if-exists` makes a second restore replace the first.
    const IDEMPOTENT: bool = true;
    const SCALES_WITH_SIZE: bool = true;

    fn summary(&self) -> String {
        format!("restore {} into {}", self.backup, self.target)
    }

    fn writes(&self) -> Vec<crate::steps::Write<'_>> {
        if self.target.trim() == EPHEMERAL {
            return Vec::new();
        }
        vec![crate::steps::Write::of(
            "target",
            &self.target,
            crate::target::Expect::Postgres,
        )]
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        for pattern in &self.allow_errors {
            if let Err(error) = regex::Regex::new(pattern) {
                out.push(super::at_key(
                    node,
                    "allow_errors",
                    format!("`{pattern}` is not a regular expression: {error}"),
                ));
            }
        }
        if self.jobs == Some(0) {
            out.push(super::at_key(node, "jobs", "`jobs` is at least 1"));
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let key = render(&self.backup)?;
        let store = Store::open(&render(&self.store)?)
            .await
            .map_err(StepFailure::of)?;
        let target_text = render(&self.target)?;
        let allowed = self
            .allow_errors
            .iter()
            .map(|p| regex::Regex::new(p).map_err(StepFailure::of))
            .collect::<Result<Vec<_>, _>>()?;

        let work = async {
            let manifest_bytes = store
                .get_bytes(&manifest::manifest_key(&key))
                .await
                .map_err(|e| {
                    if e.is_not_found() {
                        StepFailure::new(format!(
                            "{key} has no manifest in {}: an incomplete backup is never restored",
                            store.url()
                        ))
                    } else {
                        StepFailure::of(e)
                    }
                })?;
            let manifest = Manifest::parse(&manifest_bytes).map_err(StepFailure::new)?;

            // Every byte is checked before pg_restore sees one: a corrupt dump must fail here,
            // with the target untouched (pg_restore happily restores some corrupt archives).
            let scratch = Scratch::new(ctx.run_dir, ctx.id, ctx.attempt).await?;
            let started = std::time::Instant::now();
            // While the dump downloads, the target is got ready without being changed: a
            // throwaway cluster made, the server asked its version, pg_restore found.
            let getting_ready = async {
                let mut notes = Vec::new();
                let target = if target_text.trim() == EPHEMERAL {
                    let cluster = Cluster::create(
                        &ctx.run_dir.join(CLUSTERS),
                        &format!("restore-{}", ctx.id),
                        None,
                    )
                    .await
                    .map_err(StepFailure::of)?;
                    notes.push(format!(
                        "created a throwaway cluster on port {} (removed when the run ends)",
                        cluster.port
                    ));
                    Target::parse(&cluster.url(&manifest.database)).map_err(StepFailure::of)?
                } else {
                    Target::parse(&target_text).map_err(StepFailure::of)?
                };
                let server = inspect(&target).await?;
                let archive_major = crate::connect::pg_tools::parse_version(&format!(
                    "pg_dump (PostgreSQL) {}",
                    manifest.pg_dump_version
                ))
                .map(|v| v.major)
                .unwrap_or(0);
                let needed = server.version.major.max(archive_major);
                let pg_restore = tokio::task::spawn_blocking(move || {
                    crate::connect::pg_tools::find("pg_restore", Some(needed))
                })
                .await
                .map_err(StepFailure::of)?
                .map_err(StepFailure::of)?;
                Ok::<_, StepFailure>((target, server, pg_restore, notes))
            };
            let (downloaded, ready) = tokio::join!(
                download(&store, &key, &manifest, &scratch.path, ctx),
                getting_ready
            );
            // A corrupt dump is the first thing to say, whatever else went wrong.
            downloaded?;
            let (target, server, pg_restore, notes) = ready?;
            let mut evidence = vec![format!(
                "{key}: {} and sha256 {} match the manifest (downloaded and checked in {:.1} s)",
                human_bytes(manifest.size),
                manifest.sha256,
                started.elapsed().as_secs_f64()
            )];
            evidence.extend(notes);
            if let Some(created) = create_if_missing(&target, &server).await? {
                evidence.push(created);
            }

            // A directory-format backup is a tar of pg_dump's directory: unpacked beside the
            // download, and pg_restore reads the directory (in parallel with `jobs`).
            let input = if manifest.format == "directory" {
                let dir = scratch.path.with_extension("dir");
                let _ = std::fs::remove_dir_all(&dir);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| StepFailure::new(format!("{}: {e}", dir.display())))?;
                let untar = tokio::process::Command::new("tar")
                    .arg("-C")
                    .arg(&dir)
                    .arg("-xf")
                    .arg(&scratch.path)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|e| StepFailure::new(format!("cannot start tar: {e}")))?;
                if !untar.status.success() {
                    return Err(StepFailure::new(format!(
                        "unpacking {key} failed ({}): {}; the target was not touched",
                        untar.status,
                        String::from_utf8_lossy(&untar.stderr).trim()
                    )));
                }
                dir
            } else {
                scratch.path.clone()
            };

            let flags = self.flags.clone().unwrap_or_else(|| {
                ["--clean", "--if-exists", "--no-owner"]
                    .map(String::from)
                    .to_vec()
            });
            let mut command = tokio::process::Command::new(&pg_restore.path);
            command
                .args(&flags)
                .arg(format!("--jobs={}", self.jobs.unwrap_or(1).max(1)))
                .arg(format!("--dbname={}", target.database()))
                .arg("--no-password")
                .arg(&input)
                .envs(target.program_env())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            let mut child = command.spawn().map_err(|e| {
                StepFailure::new(format!("cannot start {}: {e}", pg_restore.path.display()))
            })?;
            let _group = ProcessGroup(child.id());
            let stderr_file = output_file(ctx, "pg_restore.stderr").await?;
            let restoring = std::time::Instant::now();
            let stderr_pipe = child.stderr.take();
            let (status, stderr) = tokio::join!(
                child.wait(),
                capture(stderr_pipe, stderr_file, ctx.masker, 256 * 1024,)
            );
            let status = status.map_err(|e| StepFailure::new(format!("pg_restore: {e}")))?;
            let stderr = stderr?;
            let (ignored, refused) = classify(&stderr, &allowed);
            evidence.push(format!(
                "pg_restore {} {} into {target} (PostgreSQL {}): {status}, {:.1} s",
                pg_restore.version,
                flags.join(" "),
                server.version,
                restoring.elapsed().as_secs_f64()
            ));
            if !ignored.is_empty() {
                evidence.push(format!(
                    "{} error(s) allowed by allow_errors, e.g. {}",
                    ignored.len(),
                    ignored[0]
                ));
            }
            if !refused.is_empty() || (!status.success() && ignored.is_empty()) {
                let mut failure = StepFailure::new(if refused.is_empty() {
                    format!("pg_restore failed ({status}); {target} may be partly restored",)
                } else {
                    format!(
                        "pg_restore reported {} error(s) not allowed by allow_errors; {target} is partly restored (--clean dropped the objects it restored over)",
                        refused.len()
                    )
                });
                failure.evidence = evidence;
                failure.evidence.extend(
                    refused
                        .iter()
                        .take(ERRORS_SHOWN)
                        .map(|line| format!("error: {line}")),
                );
                if refused.len() > ERRORS_SHOWN {
                    failure.evidence.push(format!(
                        "… and {} more in output/{}.{}.pg_restore.stderr",
                        refused.len() - ERRORS_SHOWN,
                        ctx.id,
                        ctx.attempt
                    ));
                }
                if refused.is_empty() {
                    failure
                        .evidence
                        .extend(stderr.lines().rev().take(10).map(String::from));
                }
                return Err(failure);
            }
            let mut done = Done::default();
            done.outputs.insert(
                "target".into(),
                // A URL with a password is shown masked: later steps that must connect
                // take it from the secret itself.
                if target_text.trim() == EPHEMERAL || target.has_password() {
                    target.shown_url()
                } else {
                    target_text.clone()
                }
                .into(),
            );
            done.outputs
                .insert("database".into(), target.database().to_string().into());
            done.outputs.insert("backup".into(), key.clone().into());
            done.outputs
                .insert("errors_ignored".into(), ignored.len().into());
            done.evidence = evidence;
            Ok(done)
        };
        tokio::select! {
            result = work => result,
            _ = ctx.cancel.cancelled() => Err(StepFailure::cancelled()),
        }
    }
}

/// pg_restore's errors shown in a failure, at most.
const ERRORS_SHOWN: usize = 20;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `target: ephemeral` asks for a throwaway local cluster.
pub const EPHEMERAL: &str = "ephemeral";

/// pg_restore's error lines, split into those `allow_errors` lets pass and the rest.
fn classify(stderr: &str, allowed: &[regex::Regex]) -> (Vec<String>, Vec<String>) {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("pg_restore: error: "))
        .map(String::from)
        .partition(|line| allowed.iter().any(|pattern| pattern.is_match(line)))
}

/// The target server as found before anything is changed.
struct Inspected {
    version: crate::connect::pg_tools::Version,
    exists: bool,
    client: tokio_postgres::Client,
}

/// Checks the server answers, its version, and whether the target database exists.
async fn inspect(target: &Target) -> Result<Inspected, StepFailure> {
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

/// Downloads the dump into `path`, hashing as it goes; fails unless size and SHA-256 match.
async fn download(
    store: &Store,
    key: &str,
    manifest: &Manifest,
    path: &std::path::Path,
    ctx: &StepContext<'_>,
) -> Result<(), StepFailure> {
    let total = manifest.size;
    let report = |done| {
        (ctx.progress)(Progress {
            done,
            total: Some(total),
            unit: Unit::Bytes,
            objects: None,
        })
    };
    let (size, sha256) = store
        .download(key, path, &report)
        .await
        .map_err(StepFailure::of)?;
    if size != manifest.size || sha256 != manifest.sha256 {
        return Err(StepFailure::new(format!(
            "{key} does not match its manifest (size {size}, manifest {}; sha256 {sha256}, manifest {}): the backup is corrupt, and the target was not touched",
            manifest.size, manifest.sha256
        )));
    }
    Ok(())
}

/// The downloaded dump, removed when the step is over whatever happened.
struct Scratch {
    path: std::path::PathBuf,
}

impl Scratch {
    async fn new(
        run_dir: &std::path::Path,
        id: &str,
        attempt: u32,
    ) -> Result<Scratch, StepFailure> {
        let dir = run_dir.join("tmp");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StepFailure::new(format!("{}: {e}", dir.display())))?;
        Ok(Scratch {
            path: dir.join(format!("{id}.{attempt}.dump")),
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir_all(self.path.with_extension("dir"));
    }
}
