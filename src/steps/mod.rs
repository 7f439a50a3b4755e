//! The step kinds: one file each, one closed enum to dispatch on.
//!
//! Adding a kind means one file, one variant in [`Kind`] and [`StepConfig`], the match arms
//! the compiler asks for, a test, and the regenerated schema.

pub mod approval;
pub mod assess;
pub mod backup;
pub mod command;
pub mod flush;
mod hashing;
pub mod manual;
pub mod notify;
pub mod promote;
pub mod restore;
pub mod smoke_test;
pub mod sync;
pub mod verify;
pub mod wait;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::diagnostic::Diagnostic;
use crate::loader::de::{self, Collector, DeError};
use crate::loader::node::Node;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Assess,
    Backup,
    Restore,
    SmokeTest,
    Promote,
    Flush,
    Sync,
    Verify,
    Notify,
    Approval,
    Manual,
    Command,
    Wait,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Assess,
        Kind::Backup,
        Kind::Restore,
        Kind::SmokeTest,
        Kind::Promote,
        Kind::Flush,
        Kind::Sync,
        Kind::Verify,
        Kind::Notify,
        Kind::Approval,
        Kind::Manual,
        Kind::Command,
        Kind::Wait,
    ];

    /// The name written in playbooks (`kind: smoke-test`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Assess => "assess",
            Kind::Backup => "backup",
            Kind::Restore => "restore",
            Kind::SmokeTest => "smoke-test",
            Kind::Promote => "promote",
            Kind::Flush => "flush",
            Kind::Sync => "sync",
            Kind::Verify => "verify",
            Kind::Notify => "notify",
            Kind::Approval => "approval",
            Kind::Manual => "manual",
            Kind::Command => "command",
            Kind::Wait => "wait",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The outputs a step of this kind produces, for `{{ steps.ID.outputs.X }}`.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Kind::Assess => assess::OUTPUTS,
            Kind::Backup => backup::OUTPUTS,
            Kind::Restore => restore::OUTPUTS,
            Kind::SmokeTest => smoke_test::OUTPUTS,
            Kind::Promote => promote::OUTPUTS,
            Kind::Flush => flush::OUTPUTS,
            Kind::Sync => sync::OUTPUTS,
            Kind::Verify => verify::OUTPUTS,
            Kind::Notify => notify::OUTPUTS,
            Kind::Approval => approval::OUTPUTS,
            Kind::Manual => manual::OUTPUTS,
            Kind::Command => command::OUTPUTS,
            Kind::Wait => wait::OUTPUTS,
        }
    }

    /// Whether a step left `running` by a crash may simply be run again on resume.
    pub fn idempotent(self) -> bool {
        match self {
            Kind::Assess => assess::IDEMPOTENT,
            Kind::Backup => backup::IDEMPOTENT,
            Kind::Restore => restore::IDEMPOTENT,
            Kind::SmokeTest => smoke_test::IDEMPOTENT,
            Kind::Promote => promote::IDEMPOTENT,
            Kind::Flush => flush::IDEMPOTENT,
            Kind::Sync => sync::IDEMPOTENT,
            Kind::Verify => verify::IDEMPOTENT,
            Kind::Notify => notify::IDEMPOTENT,
            Kind::Approval => approval::IDEMPOTENT,
            Kind::Manual => manual::IDEMPOTENT,
            Kind::Command => command::IDEMPOTENT,
            Kind::Wait => wait::IDEMPOTENT,
        }
    }

    /// The parameter keys of this kind, as its struct declares them.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            Kind::Assess => de::fields_of::<assess::Assess>(),
            Kind::Backup => de::fields_of::<backup::Backup>(),
            Kind::Restore => de::fields_of::<restore::Restore>(),
            Kind::SmokeTest => de::fields_of::<smoke_test::SmokeTest>(),
            Kind::Promote => de::fields_of::<promote::Promote>(),
            Kind::Flush => de::fields_of::<flush::Flush>(),
            Kind::Sync => de::fields_of::<sync::Sync>(),
            Kind::Verify => de::fields_of::<verify::Verify>(),
            Kind::Notify => de::fields_of::<notify::Notify>(),
            Kind::Approval => de::fields_of::<approval::Approval>(),
            Kind::Manual => de::fields_of::<manual::Manual>(),
            Kind::Command => de::fields_of::<command::Command>(),
            Kind::Wait => de::fields_of::<wait::Wait>(),
        }
    }

    /// The JSON Schema of this kind's parameters.
    pub(crate) fn parameter_schema(
        self,
        generator: &mut schemars::SchemaGenerator,
    ) -> schemars::Schema {
        match self {
            Kind::Assess => generator.root_schema_for::<assess::Assess>(),
            Kind::Backup => generator.root_schema_for::<backup::Backup>(),
            Kind::Restore => generator.root_schema_for::<restore::Restore>(),
            Kind::SmokeTest => generator.root_schema_for::<smoke_test::SmokeTest>(),
            Kind::Promote => generator.root_schema_for::<promote::Promote>(),
            Kind::Flush => generator.root_schema_for::<flush::Flush>(),
            Kind::Sync => generator.root_schema_for::<sync::Sync>(),
            Kind::Verify => generator.root_schema_for::<verify::Verify>(),
            Kind::Notify => generator.root_schema_for::<notify::Notify>(),
            Kind::Approval => generator.root_schema_for::<approval::Approval>(),
            Kind::Manual => generator.root_schema_for::<manual::Manual>(),
            Kind::Command => generator.root_schema_for::<command::Command>(),
            Kind::Wait => generator.root_schema_for::<wait::Wait>(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A step's kind with its typed parameters.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum StepConfig {
    Assess(assess::Assess),
    Backup(backup::Backup),
    Restore(restore::Restore),
    SmokeTest(smoke_test::SmokeTest),
    Promote(promote::Promote),
    Flush(flush::Flush),
    Sync(sync::Sync),
    Verify(verify::Verify),
    Notify(notify::Notify),
    Approval(approval::Approval),
    Manual(manual::Manual),
    Command(command::Command),
    Wait(wait::Wait),
}

impl StepConfig {
    /// Reads a step's parameters from its mapping; `common` are the keys every step has.
    pub(crate) fn read(
        kind: Kind,
        node: &Node,
        collector: &Collector,
        common: &'static [&'static str],
    ) -> Result<StepConfig, DeError> {
        Ok(match kind {
            Kind::Assess => StepConfig::Assess(de::from_node(node, collector, common)?),
            Kind::Backup => StepConfig::Backup(de::from_node(node, collector, common)?),
            Kind::Restore => StepConfig::Restore(de::from_node(node, collector, common)?),
            Kind::SmokeTest => StepConfig::SmokeTest(de::from_node(node, collector, common)?),
            Kind::Promote => StepConfig::Promote(de::from_node(node, collector, common)?),
            Kind::Flush => StepConfig::Flush(de::from_node(node, collector, common)?),
            Kind::Sync => StepConfig::Sync(de::from_node(node, collector, common)?),
            Kind::Verify => StepConfig::Verify(de::from_node(node, collector, common)?),
            Kind::Notify => StepConfig::Notify(de::from_node(node, collector, common)?),
            Kind::Approval => StepConfig::Approval(de::from_node(node, collector, common)?),
            Kind::Manual => StepConfig::Manual(de::from_node(node, collector, common)?),
            Kind::Command => StepConfig::Command(de::from_node(node, collector, common)?),
            Kind::Wait => StepConfig::Wait(de::from_node(node, collector, common)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            StepConfig::Assess(_) => Kind::Assess,
            StepConfig::Backup(_) => Kind::Backup,
            StepConfig::Restore(_) => Kind::Restore,
            StepConfig::SmokeTest(_) => Kind::SmokeTest,
            StepConfig::Promote(_) => Kind::Promote,
            StepConfig::Flush(_) => Kind::Flush,
            StepConfig::Sync(_) => Kind::Sync,
            StepConfig::Verify(_) => Kind::Verify,
            StepConfig::Notify(_) => Kind::Notify,
            StepConfig::Approval(_) => Kind::Approval,
            StepConfig::Manual(_) => Kind::Manual,
            StepConfig::Command(_) => Kind::Command,
            StepConfig::Wait(_) => Kind::Wait,
        }
    }

    /// One line saying what the step will do, for plans and prompts.
    pub fn summary(&self) -> String {
        match self {
            StepConfig::Assess(step) => step.summary(),
            StepConfig::Backup(step) => step.summary(),
            StepConfig::Restore(step) => step.summary(),
            StepConfig::SmokeTest(step) => step.summary(),
            StepConfig::Promote(step) => step.summary(),
            StepConfig::Flush(step) => step.summary(),
            StepConfig::Sync(step) => step.summary(),
            StepConfig::Verify(step) => step.summary(),
            StepConfig::Notify(step) => step.summary(),
            StepConfig::Approval(step) => step.summary(),
            StepConfig::Manual(step) => step.summary(),
            StepConfig::Command(step) => step.summary(),
            StepConfig::Wait(step) => step.summary(),
        }
    }

    /// Rules a kind's parameters must follow beyond their types.
    pub(crate) fn check(&self, node: &Node, out: &mut Vec<Diagnostic>) {
        match self {
            StepConfig::SmokeTest(step) => step.check(out),
            StepConfig::Promote(step) => step.check(node, out),
            StepConfig::Notify(step) => step.check(node, out),
            StepConfig::Approval(step) => step.check(node, out),
            StepConfig::Command(step) => step.check(out),
            StepConfig::Backup(step) => step.check(node, out),
            StepConfig::Assess(step) => step.check(node, out),
            StepConfig::Restore(step) => step.check(node, out),
            StepConfig::Sync(step) => step.check(node, out),
            StepConfig::Flush(_)
            | StepConfig::Verify(_)
            | StepConfig::Manual(_)
            | StepConfig::Wait(_) => {}
        }
    }

    /// Runs one attempt of the step. Human steps (`approval`, `manual`) are settled by the
    /// runner's gate before this is called; their `run` only reports the decision.
    pub(crate) async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        match self {
            StepConfig::Command(step) => step.run(ctx).await,
            StepConfig::Notify(step) => step.run(ctx).await,
            StepConfig::Approval(step) => step.run(ctx),
            StepConfig::Manual(step) => step.run(ctx),
            StepConfig::Wait(step) => step.run(ctx).await,
            StepConfig::Assess(step) => step.run(ctx).await,
            StepConfig::Backup(step) => step.run(ctx).await,
            StepConfig::Restore(step) => step.run(ctx).await,
            StepConfig::SmokeTest(step) => step.run(ctx).await,
            StepConfig::Verify(step) => step.run(ctx).await,
            StepConfig::Promote(step) => step.run(ctx).await,
            StepConfig::Flush(step) => step.run(ctx).await,
            StepConfig::Sync(step) => step.run(ctx).await,
        }
    }

    /// Promote touches what the application uses: live-only unless said otherwise.
    pub fn live_only_by_default(&self) -> bool {
        matches!(self, StepConfig::Promote(_))
    }
}

/// A diagnostic pointing at `key` of a step's mapping (or the step itself when absent).
pub(crate) fn at_key(node: &Node, key: &str, message: impl Into<String>) -> Diagnostic {
    let place = node.key(key).unwrap_or(node);
    Diagnostic::new(place.pos, place.len, message)
}

/// `output/<step>.<attempt>.<name>` in the run's directory, the directory made: where a step
/// keeps the full output of the programs it runs.
pub(crate) async fn output_file(
    ctx: &StepContext<'_>,
    name: &str,
) -> Result<std::path::PathBuf, StepFailure> {
    let dir = ctx.run_dir.join("output");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| StepFailure::new(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir.join(format!("{}.{}.{name}", ctx.id, ctx.attempt)))
}

/// Reads `reader` to its end, hashing it (SHA-256, hex) and copying it into `copy` when given,
/// reporting progress against `total`. Returns the size and the hash.
pub(crate) async fn read_hashed(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    mut copy: Option<&mut (dyn tokio::io::AsyncWrite + Unpin + Send)>,
    total: u64,
    ctx: &StepContext<'_>,
) -> std::io::Result<(u64, String)> {
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        if let Some(copy) = copy.as_mut() {
            copy.write_all(&buffer[..read]).await?;
        }
        size += read as u64;
        (ctx.progress)(Progress {
            done: size,
            total: Some(total),
            unit: Unit::Bytes,
            objects: None,
        });
    }
    if let Some(copy) = copy.as_mut() {
        copy.flush().await?;
    }
    Ok((size, crate::manifest::hex(&hasher.finalize())))
}

/// Who decided and when, as a human step's outputs.
fn decision_outputs(ctx: &StepContext<'_>, by_key: &str, at_key: &str) -> Done {
    let mut done = Done::default();
    if let Some((by, at)) = ctx.decided {
        done.outputs.insert(by_key.into(), by.into());
        done.outputs.insert(at_key.into(), at.to_string().into());
    }
    done
}

/// What a step gets to do its work: its rendered templates, where to put files, how to report
/// progress, and the token that says stop.
pub struct StepContext<'a> {
    pub id: &'a str,
    pub attempt: u32,
    /// The run's directory: captured output goes under `output/`.
    pub run_dir: &'a Path,
    pub masker: &'a crate::secrets::Masker,
    /// Cancelled on Ctrl-C: stop, kill children, return [`StepFailure::cancelled`].
    pub cancel: CancellationToken,
    /// Renders a template string with the run's context (vars, secrets, outputs, run).
    pub render: &'a (dyn Fn(&str) -> Result<String, String> + Send + Sync),
    /// Reports progress (done, total) for the terminal.
    pub progress: &'a (dyn Fn(Progress) + Send + Sync),
    /// The human decision that let a human step through: who and when.
    pub decided: Option<(&'a str, jiff::Timestamp)>,
    pub http: &'a reqwest::Client,
    /// When the incident was declared (`--declared-at`) or the run started: RPO is measured
    /// against it.
    pub clock_start: jiff::Timestamp,
    pub objectives: &'a crate::model::Objectives,
}

#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    pub unit: Unit,
    /// Objects done of all, beside bytes, for steps that move many objects.
    pub objects: Option<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Rows,
    Objects,
}

/// A step's result: outputs for later templates, evidence for the report.
#[derive(Debug, Default)]
pub struct Done {
    pub outputs: BTreeMap<String, serde_json::Value>,
    pub evidence: Vec<String>,
}

#[derive(Debug)]
pub struct StepFailure {
    pub message: String,
    pub evidence: Vec<String>,
    /// Outputs known despite the failure (an exit code, say).
    pub outputs: BTreeMap<String, serde_json::Value>,
    pub cancelled: bool,
    /// Trying again cannot help (the source is damaged): no further attempts, whatever the
    /// step's `retry`.
    pub permanent: bool,
}

impl StepFailure {
    /// A failure whose message is an error's own (connectors' errors are written for people).
    pub fn of(error: impl std::fmt::Display) -> StepFailure {
        StepFailure::new(error.to_string())
    }

    pub fn new(message: impl Into<String>) -> StepFailure {
        StepFailure {
            message: message.into(),
            evidence: Vec::new(),
            outputs: BTreeMap::new(),
            cancelled: false,
            permanent: false,
        }
    }

    pub fn cancelled() -> StepFailure {
        StepFailure {
            cancelled: true,
            ..StepFailure::new("cancelled")
        }
    }
}
