//! `restore`: verify a backup against its manifest, then `pg_restore` it into a scratch
//! database beside the target and swap it in by renaming (`swap.rs`: a failed restore changes
//! nothing), into a throwaway cluster (`target: ephemeral`), or — only when the step says
//! `in_place: true` — into the target itself.

mod carry;
mod catalog;
mod download;
mod names;
mod pg_restore;
mod pgbackrest;
mod point_in_time;
mod swap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::CLUSTERS;
use super::{Done, StepContext, StepFailure};
use crate::connect::cluster::Cluster;
use crate::connect::pg_tools::Tool;
use crate::connect::postgres::Target;
use crate::connect::store::Store;
use crate::duration::human_bytes;
use crate::manifest::{self, Manifest};
use download::Download;
use pg_restore::{Inspected, inspect};

/// Downloads `backup` from `store`, checking size and SHA-256 against its manifest before
/// `pg_restore` sees a byte, then restores it with `pg_restore --clean --if-exists --no-owner`
/// into a new scratch database on the target's server, checks it, and swaps it in for
/// `target` by renaming (the replaced database kept as `<db>_before_<time>`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The backup key, usually `{{ steps.assess.outputs.backup }}`.
    pub backup: String,
    /// The store holding the backup (required unless `engine: pgbackrest`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
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
    /// End the sessions connected to the target right before the swap
    /// (`pg_terminate_backend`). Default: refuse to restore while any is open.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminate_connections: bool,
    /// How many databases replaced by restores into this target to keep
    /// (`<db>_before_<time>`, newest first); older ones drillbook made are dropped after a
    /// swap. `0` drops the one just replaced.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub keep_previous: u32,
    /// Compare every table's row count and the large objects in the restored copy with the
    /// backup's manifest before the swap. Turn off only when `flags` restore part of a backup.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub row_counts: bool,
    /// Restore straight into the target (no scratch database, no swap): for a role that may
    /// not create databases. A failed restore then leaves the target partly restored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_place: bool,
    /// For a base backup (`format: base`): where recovery from the WAL archive stops —
    /// `latest` (the end of the archive, the default), a time (`2026-12-05T10:00:00Z`), a
    /// duration before the incident's declared time or the run's start (`1h ago`),
    /// `lsn 0/3000000`, or `name <restore point>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target: Option<String>,
    /// For a base backup: the database the `target` output points at (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `drillbook` (the default: drillbook's backups in `store`) or `pgbackrest`: a pgBackRest
    /// repository, named by `stanza` and `config`.
    #[serde(default, skip_serializing_if = "is_drillbook")]
    pub engine: super::engine::Engine,
    /// With `engine: pgbackrest`: the stanza.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stanza: Option<String>,
    /// With `engine: pgbackrest`: its configuration file (default: pgBackRest's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}
fn is_drillbook(engine: &super::engine::Engine) -> bool {
    *engine == super::engine::Engine::Drillbook
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn yes() -> bool {
    true
}

impl super::StepKind for Restore {
    const NAME: &'static str = "restore";
    const OUTPUTS: &'static [&'static str] = &[
        "target",
        "database",
        "backup",
        "errors_ignored",
        "previous_database",
        "scratch_database",
        "recovered_to",
        "timeline",
        "target_reached",
    ];
    /// The target changes only at the swap, in one transaction, and a re-run drops what an
    /// interrupted attempt left (and does not restore again after a swap it made): a restore
    /// left running by a crash is simply run again. (`in_place: true` relies on
    /// `--clean --if-exists` making a second restore replace the first.)
    const IDEMPOTENT: bool = true;
    const SCALES_WITH_SIZE: bool = true;

    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        match self.engine {
            super::engine::Engine::Pgbackrest => Vec::new(),
            super::engine::Engine::Drillbook => {
                vec![Access::of("store", &self.store, &[Need::List, Need::Read])]
            }
        }
    }

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
        super::engine::check(
            self.engine,
            &self.store,
            &self.stanza,
            &self.config,
            node,
            out,
        );
        if let Some(target) = &self.recovery_target
            && !target.contains("{{")
            && let Err(error) =
                crate::wal::recovery_target::parse_target(target, jiff::Timestamp::now())
        {
            out.push(super::at_key(node, "recovery_target", error));
        }
        if self.jobs == Some(0) {
            out.push(super::at_key(node, "jobs", "`jobs` is at least 1"));
        }
        if self.in_place && self.target.trim() == EPHEMERAL {
            out.push(super::at_key(
                node,
                "in_place",
                "`in_place` is for a target database: `ephemeral` is a throwaway cluster",
            ));
        }
        let creates = self
            .flags
            .iter()
            .flatten()
            .any(|flag| flag == "--create" || flag == "-C");
        if creates && !self.in_place {
            out.push(super::at_key(
                node,
                "flags",
                "`--create` restores into the dump's own database, around the scratch database the swap needs: leave it out",
            ));
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let key = render(&self.backup)?;
        if self.engine == super::engine::Engine::Pgbackrest {
            let repository = super::engine::repository(&self.stanza, &self.config, &render)?;
            return pgbackrest::restore(self, ctx, &repository, &key, &render(&self.target)?).await;
        }
        let store = Store::open(&render(&self.store)?)
            .await
            .map_err(StepFailure::of)?;
        let target_text = render(&self.target)?;
        if crate::wal::base::time_of(&key).is_some() {
            return point_in_time::restore(self, ctx, &store, &key, &target_text).await;
        }
        if self.recovery_target.is_some() || self.database.is_some() {
            return Err(StepFailure::permanent(format!(
                "`recovery_target` and `database` are for base backups (base/….tar.zst), and {key} is a dump"
            )));
        }
        let allowed = self
            .allow_errors
            .iter()
            .map(|p| regex::Regex::new(p).map_err(StepFailure::of))
            .collect::<Result<Vec<_>, _>>()?;

        let prepared = tokio::select! {
            prepared = self.prepare(ctx, &store, &key, &target_text) => prepared?,
            _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
        };
        let (target, restored, mut evidence) = match prepared {
            Prepare::Done(target, restored) => (target, restored, Vec::new()),
            // The swap path handles cancellation itself: the swap is never cut in two.
            Prepare::Restore(prepared, Destination::Swap(server)) => {
                let target = server.target().clone();
                let restored = swap::restore(self, ctx, *server, &prepared, &allowed).await;
                let restored = restored.map_err(|f| prepared.with_evidence(f))?;
                (target, restored, prepared.evidence)
            }
            Prepare::Restore(prepared, Destination::Direct(target, server)) => {
                let restored = tokio::select! {
                    restored = self.in_place(ctx, &prepared, &target, &server, &allowed) => restored,
                    _ = ctx.cancel.cancelled() => Err(StepFailure::cancelled()),
                };
                let restored = restored.map_err(|f| prepared.with_evidence(f))?;
                (target, restored, prepared.evidence)
            }
        };
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
        done.outputs.insert("backup".into(), key.into());
        done.outputs
            .insert("errors_ignored".into(), restored.ignored.into());
        done.outputs
            .insert("previous_database".into(), restored.previous.into());
        done.outputs
            .insert("scratch_database".into(), restored.scratch.into());
        evidence.extend(restored.evidence);
        done.evidence = evidence;
        Ok(done)
    }
}

/// What is known once the dump is downloaded and checked, before anything is changed.
struct Prepared {
    key: String,
    manifest: Manifest,
    pg_restore: Tool,
    /// The dump, or the directory it was unpacked into.
    input: std::path::PathBuf,
    evidence: Vec<String>,
    _download: Download,
}

impl Prepared {
    /// A failure with what was done before it.
    fn with_evidence(&self, mut failure: StepFailure) -> StepFailure {
        failure.evidence.splice(0..0, self.evidence.iter().cloned());
        failure
    }
}

/// Ready to restore, or nothing to do.
enum Prepare {
    Restore(Box<Prepared>, Destination),
    /// An earlier attempt of this step made the swap.
    Done(Target, Restored),
}

/// Where the dump goes. (One per attempt, moved once: its size does not matter.)
#[allow(clippy::large_enum_variant)]
enum Destination {
    /// A scratch database, swapped in.
    Swap(Box<swap::Server>),
    /// The target itself (`in_place`), or a throwaway cluster's database.
    Direct(Target, Inspected),
}

/// What a restore did, for the outputs.
struct Restored {
    evidence: Vec<String>,
    ignored: usize,
    /// The database the swap replaced, as kept; empty without one.
    previous: String,
    /// The scratch database restored into (now the target); empty without one.
    scratch: String,
}

impl Restore {
    /// Reads the manifest, downloads and checks the dump while the target is got ready
    /// without being changed (a throwaway cluster made, the server asked its version and
    /// checked for what the swap needs, pg_restore found).
    async fn prepare(
        &self,
        ctx: &StepContext<'_>,
        store: &Store,
        key: &str,
        target_text: &str,
    ) -> Result<Prepare, StepFailure> {
        let manifest_bytes = store
            .get_bytes(&manifest::manifest_key(key))
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
        let download = Download::new(ctx.run_dir, ctx.id, ctx.attempt).await?;
        let started = std::time::Instant::now();
        let getting_ready = async {
            let mut notes = Vec::new();
            let destination = if target_text.trim() == EPHEMERAL {
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
                let target =
                    Target::parse(&cluster.url(&manifest.database)).map_err(StepFailure::of)?;
                let server = inspect(&target).await?;
                Destination::Direct(target, server)
            } else {
                let target = Target::parse(target_text).map_err(StepFailure::of)?;
                if self.in_place {
                    let server = inspect(&target).await?;
                    Destination::Direct(target, server)
                } else {
                    match swap::inspect(target.clone(), self, ctx, key).await? {
                        swap::Ready::Swap(server) => Destination::Swap(server),
                        swap::Ready::Done(restored) => {
                            return Ok(Err((target, restored)));
                        }
                    }
                }
            };
            let server_major = match &destination {
                Destination::Swap(server) => server.version.major,
                Destination::Direct(_, server) => server.version.major,
            };
            let archive_major = crate::connect::pg_tools::parse_version(&format!(
                "pg_dump (PostgreSQL) {}",
                manifest.pg_dump_version
            ))
            .map(|v| v.major)
            .unwrap_or(0);
            let needed = server_major.max(archive_major);
            let pg_restore = crate::connect::child::blocking(move || {
                crate::connect::pg_tools::find("pg_restore", Some(needed))
            })
            .await
            .map_err(StepFailure::of)?
            .map_err(StepFailure::of)?;
            Ok::<_, StepFailure>(Ok((destination, pg_restore, notes)))
        };
        let (downloaded, ready) =
            tokio::join!(download.fetch(store, key, &manifest, ctx), getting_ready);
        let (archive, (destination, pg_restore, notes)) = match ready {
            // Nothing is restored again: whatever the store holds now does not matter.
            Ok(Err((target, restored))) => return Ok(Prepare::Done(target, restored)),
            // A corrupt dump is the first thing to say, whatever else went wrong.
            Ok(Ok(ready)) => (downloaded?, ready),
            Err(failure) => {
                downloaded?;
                return Err(failure);
            }
        };
        let done = match manifest.compressed_with {
            Some(_) => "downloaded, checked and decompressed",
            None => "downloaded and checked",
        };
        let mut evidence = vec![format!(
            "{key}: {} and sha256 {} match the manifest ({done} in {:.1} s)",
            human_bytes(manifest.size),
            manifest.sha256,
            started.elapsed().as_secs_f64()
        )];
        evidence.extend(notes);
        let input = download.unpack(key, &manifest, archive).await?;
        let prepared = Prepared {
            key: key.to_string(),
            manifest,
            pg_restore,
            input,
            evidence,
            _download: download,
        };
        Ok(Prepare::Restore(Box::new(prepared), destination))
    }
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `target: ephemeral` asks for a throwaway local cluster.
pub const EPHEMERAL: &str = "ephemeral";
