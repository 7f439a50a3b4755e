//! `command`: run a program (never a shell) and keep its output as evidence.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::loader::Spanned;

/// Runs `run` (program and arguments, each a template) with `env` and `workdir`; stdout and
/// stderr are captured to the run directory and tailed in the report.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Program and arguments, e.g. `[pg_isready, -h, db.internal]`. A list, never a shell
    /// string, so a template value cannot inject a command.
    pub run: Spanned<Vec<String>>,
    /// Extra environment variables (templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Exit statuses that count as success (default `[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_codes: Option<Vec<i32>>,
}

pub const OUTPUTS: &[&str] = &["exit_code", "stdout", "stderr"];
/// An arbitrary program may not be safe to repeat.
pub const IDEMPOTENT: bool = false;

impl Command {
    pub fn summary(&self) -> String {
        self.run.value.join(" ")
    }
}

impl Command {
    pub(crate) fn check(&self, out: &mut Vec<crate::diagnostic::Diagnostic>) {
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
}
