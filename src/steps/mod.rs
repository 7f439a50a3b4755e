//! The step kinds: one file each, listed once in the table below.
//!
//! Adding a kind means its own file (its config struct and `impl StepKind`, with its tests at
//! the bottom), one row in [`kinds!`], the regenerated schema, and its section in
//! docs/language.md (and the kind list in README.md). ARCHITECTURE.md walks through it.

pub mod approval;
pub mod assess;
pub mod backup;
pub(crate) mod capture;
pub mod command;
pub mod config_backup;
pub mod config_restore;
pub mod engine;
pub mod flush;
mod hashing;
pub mod manual;
mod merge;
pub mod notify;
mod pending;
pub mod promote;
pub mod restore;
pub mod smoke_test;
mod spill;
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
use crate::progress::{Progress, Unit};

/// What a step kind declares, in its own file: its name, its outputs, whether it is safe to
/// run again, its rules beyond types, and what it does. The table below lists the kinds; the
/// enums and every dispatch are generated from it, so nothing else names a kind.
pub(crate) trait StepKind:
    Sized + Clone + std::fmt::Debug + Serialize + serde::de::DeserializeOwned + schemars::JsonSchema
{
    /// The name written in playbooks (`kind: smoke-test`).
    const NAME: &'static str;
    /// The outputs a step of this kind produces, for `{{ steps.ID.outputs.X }}`.
    const OUTPUTS: &'static [&'static str];
    /// Whether a step left `running` by a crash may simply be run again on resume.
    const IDEMPOTENT: bool;
    /// Touches what the application uses: live-only unless the step says otherwise.
    const LIVE_ONLY_BY_DEFAULT: bool = false;
    /// Its duration grows with the bytes it moves: prediction scales it by size.
    const SCALES_WITH_SIZE: bool = false;
    /// Its finishes are messages sent (reports list them; `every:` repeats them).
    const SENDS_MESSAGES: bool = false;
    /// Its `taken_at` output is the RPO's evidence: the newest restorable backup.
    const RPO_EVIDENCE: bool = false;
    /// Its parameters whose templates become a program's arguments: no secret may flow there.
    const ARGUMENTS: &'static [Arguments] = &[];

    /// One line saying what the step will do, for plans and prompts.
    fn summary(&self) -> String;

    /// Rules its parameters must follow beyond their types.
    fn check(&self, _node: &Node, _out: &mut Vec<Diagnostic>) {}

    /// The parameters it writes through: a drill compares each, rendered, with every live
    /// target before the run starts and again before the step runs.
    fn writes(&self) -> Vec<Write<'_>> {
        Vec::new()
    }

    /// The stores and secrets it reaches, and what it does there: what `drillbook policy`
    /// turns into the least AWS permissions the playbook needs.
    fn access(&self) -> Vec<Access<'_>> {
        Vec::new()
    }

    /// Runs one attempt. Human steps (`approval`, `manual`) are settled by the runner's gate
    /// before this is called; their `run` only reports the decision.
    fn run(
        &self,
        ctx: &StepContext<'_>,
    ) -> impl std::future::Future<Output = Result<Done, StepFailure>> + Send;
}

/// A parameter a step writes through: what the drill interlock renders and compares with the
/// live targets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Write<'a> {
    /// The parameter, for messages.
    pub param: &'static str,
    /// Its value as written (a template).
    pub value: &'a str,
    /// What it holds.
    pub expect: crate::target::Expect,
    /// The step acts on the whole server behind it (FLUSHALL, promoting a cluster).
    pub server: bool,
}

impl<'a> Write<'a> {
    pub(crate) fn of(param: &'static str, value: &'a str, expect: crate::target::Expect) -> Self {
        Write {
            param,
            value,
            expect,
            server: false,
        }
    }

    /// The whole server behind the value.
    pub(crate) fn server(self) -> Self {
        Write {
            server: true,
            ..self
        }
    }
}

/// A store (or secret) a step reaches through one of its parameters, and what it does there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Access<'a> {
    /// The parameter, for messages.
    pub param: &'static str,
    /// Its value as written (a template): a store URL, or a secret's id.
    pub value: &'a str,
    pub needs: &'static [Need],
}

/// What a step does with a store or a secret. Each maps to the AWS actions it takes (see
/// `crate::iam`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Lists the store's objects.
    List,
    /// Reads objects (and their metadata).
    Read,
    /// Writes objects, in one request or in parts (with a marker naming the upload while it
    /// is under way).
    Write,
    /// Deletes objects: pruning, and what a crashed attempt left unvouched.
    Delete,
    /// Finds and aborts the multipart uploads a crashed run of its own left.
    CleanUp,
    /// Lists the bucket's unfinished multipart uploads, whoever started them.
    ListUploads,
    /// Reads the bucket's versioning and lifecycle rules.
    Posture,
    /// Writes a new version of a secret (reading the current one first).
    WriteSecret,
}

impl<'a> Access<'a> {
    pub(crate) fn of(param: &'static str, value: &'a str, needs: &'static [Need]) -> Self {
        Access {
            param,
            value,
            needs,
        }
    }
}

/// The table of step kinds: one row each, `Variant(module::Config)`. From it come [`Kind`],
/// [`StepConfig`] and every match over them.
macro_rules! kinds {
    ($($variant:ident($module:ident::$config:ident)),+ $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant),+
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            /// The name written in playbooks (`kind: smoke-test`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::NAME),+
                }
            }

            /// The outputs a step of this kind produces, for `{{ steps.ID.outputs.X }}`.
            pub fn outputs(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::OUTPUTS),+
                }
            }

            /// Whether a step left `running` by a crash may simply be run again on resume.
            pub fn idempotent(self) -> bool {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::IDEMPOTENT),+
                }
            }

            pub fn live_only_by_default(self) -> bool {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::LIVE_ONLY_BY_DEFAULT),+
                }
            }

            pub fn scales_with_size(self) -> bool {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::SCALES_WITH_SIZE),+
                }
            }

            pub fn sends_messages(self) -> bool {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::SENDS_MESSAGES),+
                }
            }

            pub fn rpo_evidence(self) -> bool {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::RPO_EVIDENCE),+
                }
            }

            /// Its parameters whose templates become a program's arguments.
            pub(crate) fn arguments(self) -> &'static [Arguments] {
                match self {
                    $(Kind::$variant => <$module::$config as StepKind>::ARGUMENTS),+
                }
            }

            /// The parameter keys of this kind, as its struct declares them.
            pub fn parameters(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$variant => de::fields_of::<$module::$config>()),+
                }
            }

            /// The JSON Schema of this kind's parameters.
            pub(crate) fn parameter_schema(
                self,
                generator: &mut schemars::SchemaGenerator,
            ) -> schemars::Schema {
                match self {
                    $(Kind::$variant => generator.root_schema_for::<$module::$config>()),+
                }
            }
        }

        /// A step's kind with its typed parameters.
        #[derive(Clone, Debug, Serialize)]
        #[serde(untagged)]
        pub enum StepConfig {
            $($variant($module::$config)),+
        }

        impl StepConfig {
            /// Reads a step's parameters from its mapping; `common` are the keys every step
            /// has.
            pub(crate) fn read(
                kind: Kind,
                node: &Node,
                collector: &Collector,
                common: &'static [&'static str],
            ) -> Result<StepConfig, DeError> {
                Ok(match kind {
                    $(Kind::$variant => StepConfig::$variant(de::from_node(node, collector, common)?)),+
                })
            }

            pub fn kind(&self) -> Kind {
                match self {
                    $(StepConfig::$variant(_) => Kind::$variant),+
                }
            }

            /// One line saying what the step will do, for plans and prompts.
            pub fn summary(&self) -> String {
                match self {
                    $(StepConfig::$variant(step) => step.summary()),+
                }
            }

            /// Rules a kind's parameters must follow beyond their types.
            pub(crate) fn check(&self, node: &Node, out: &mut Vec<Diagnostic>) {
                match self {
                    $(StepConfig::$variant(step) => step.check(node, out)),+
                }
            }

            /// The stores and secrets it reaches, for `drillbook policy`.
            pub(crate) fn access(&self) -> Vec<Access<'_>> {
                match self {
                    $(StepConfig::$variant(step) => step.access()),+
                }
            }

            /// The parameters it writes through, for the drill interlock.
            pub(crate) fn writes(&self) -> Vec<Write<'_>> {
                match self {
                    $(StepConfig::$variant(step) => step.writes()),+
                }
            }

            /// Runs one attempt of the step.
            pub(crate) async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
                match self {
                    $(StepConfig::$variant(step) => step.run(ctx).await),+
                }
            }
        }
    };
}

kinds! {
    Assess(assess::Assess),
    Backup(backup::Backup),
    Restore(restore::Restore),
    SmokeTest(smoke_test::SmokeTest),
    Promote(promote::Promote),
    Flush(flush::Flush),
    Sync(sync::Sync),
    Verify(verify::Verify),
    ConfigBackup(config_backup::ConfigBackup),
    ConfigRestore(config_restore::ConfigRestore),
    Notify(notify::Notify),
    Approval(approval::Approval),
    Manual(manual::Manual),
    Command(command::Command),
    Wait(wait::Wait),
}

impl Kind {
    /// The kind a name stands for (`smoke-test`).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|kind| kind.name() == name)
    }
}

impl StepConfig {
    /// The parameters it writes through, as written (templates): `(parameter, value)`, what a
    /// drill compares with the live targets. For tools and tests that check playbooks.
    pub fn write_params(&self) -> Vec<(&'static str, String)> {
        self.writes()
            .into_iter()
            .map(|write| (write.param, write.value.to_string()))
            .collect()
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A parameter whose templates become a program's arguments, which every user of the host can
/// read (`ps`, `/proc/PID/cmdline`): validation refuses a secret that flows into one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arguments {
    /// The parameter's key; `list.key` is `key` in each item of the list `list`.
    pub path: &'static str,
    /// The program the arguments go to; `None`: the parameter is a list whose first word is
    /// the program.
    pub program: Option<&'static str>,
    /// Where a secret goes instead, for the help line.
    pub instead: &'static str,
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
    capture::file(ctx.run_dir, ctx.id, ctx.attempt, name)
        .await
        .map_err(StepFailure::new)
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
    Ok((size, crate::format::hex(&hasher.finalize())))
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
    /// The playbook's RPO objective, which `assess` judges its evidence against.
    pub rpo: Option<crate::duration::Duration>,
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
    /// A failure whose message is an error's own (connectors' errors are written for people),
    /// permanent when the error says trying again cannot help (a store's refusal).
    pub fn of<E: std::fmt::Display + 'static>(error: E) -> StepFailure {
        let any: &dyn std::any::Any = &error;
        let permanent = any
            .downcast_ref::<crate::connect::store::StoreError>()
            .is_some_and(crate::connect::store::StoreError::is_permanent)
            || any
                .downcast_ref::<crate::connect::postgres::PgError>()
                .is_some_and(crate::connect::postgres::PgError::is_permanent);
        StepFailure {
            permanent,
            ..StepFailure::new(error.to_string())
        }
    }

    /// A failure that trying again cannot mend (a checksum mismatch, an invalid parameter).
    pub fn permanent(message: impl Into<String>) -> StepFailure {
        StepFailure {
            permanent: true,
            ..StepFailure::new(message)
        }
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
